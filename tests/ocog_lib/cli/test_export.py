"""`ocog export hdf5`: a package a fresh Python reads with h5py alone, as docs/hdf5.md says."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from ocog_lib.cli.main import main
from tests.support.hdf5pkg import cog_window

# what docs/hdf5.md "Loading with h5py alone" shows, nothing more
READER = r"""
import json, sys, h5py, numpy as np
path, out = sys.argv[1], sys.argv[2]
stem = path[: -len(".h5")]
splits = json.load(open(stem + "_splits.json"))
stats = json.load(open(stem + "_band_stats.json"))
tiles = json.load(open(stem + "_tile_info.json"))
with h5py.File(path, "r") as f:
    image_key = f.attrs["image_modality"]
    i = splits["train"][0]
    x = f[image_key][i]
    y = f["label"][i, 0]
    m = f["metadata"][i]
    tile = m["tile_id"].decode()
    item, row, col = m["item"].decode(), int(m["row"]), int(m["col"])
    info = tiles[tile]["items"][item]
    mean = np.array(stats[image_key]["mean"])[:, None, None]
    std = np.array(stats[image_key]["std"])[:, None, None]
    x_norm = (x - mean) / std
    np.savez(out, x=x, y=y, x_norm=x_norm)
    heavy = sorted(m for m in ("torch", "ocog_lib", "rasterio") if m in sys.modules)
    print(json.dumps({"index": i, "item": item, "row": row, "col": col, "image": info["image"],
                      "mask": info["mask"], "crs": info["crs"], "shape": list(x.shape),
                      "dtype": str(x.dtype), "n": f[image_key].shape[0], "heavy": heavy}))
"""


@pytest.fixture
def data_dir(tiny_sample, tmp_path, monkeypatch):
    root = tmp_path / "data"
    shutil.copytree(tiny_sample.prepared, root / "prepared" / "sample")
    monkeypatch.setenv("OCOG_DATA_DIR", str(root))
    return root


def test_export_then_a_fresh_python_reads_it_with_h5py_alone(data_dir, tmp_path, capsys):
    out = tmp_path / "pkg" / "data_sample.h5"
    argv = ["export", "hdf5", "--dataset", "sample", "--output", str(out),
            "--patch-size", "128", "--split-block", "256", "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["path"] == str(out) and not summary["skipped"]
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "data_sample.h5", "data_sample.h5.content.json", "data_sample_band_stats.json",
        "data_sample_splits.json", "data_sample_tile_info.json",
    ]
    proc = subprocess.run(
        [sys.executable, "-I", "-c", READER, str(out), str(tmp_path / "got.npz")],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen["heavy"] == []
    assert seen["n"] == summary["samples"] and seen["shape"] == [4, 128, 128]
    assert seen["dtype"] == "uint16" and seen["crs"].startswith("EPSG:")
    got = np.load(tmp_path / "got.npz")
    np.testing.assert_array_equal(got["x"], cog_window(seen["image"], seen["row"], seen["col"],
                                                       128))
    np.testing.assert_array_equal(got["y"], cog_window(seen["mask"], seen["row"], seen["col"],
                                                       128)[0])
    assert np.isfinite(got["x_norm"]).all() and abs(float(got["x_norm"].mean())) < 10

    # again: up to date, skipped; then the check command compares with the COGs
    assert main(["export", "hdf5", "--dataset", "sample", "--output", str(out),
                 "--patch-size", "128", "--split-block", "256"]) == 0
    assert "up to date, skipped" in capsys.readouterr().out
    assert main(["export", "check", str(out), "--samples", "8"]) == 0
    assert "8 samples compared with their COGs, 0 differ" in capsys.readouterr().out


def test_default_output_and_errors(data_dir, capsys):
    assert main(["export", "hdf5", "--dataset", "sample", "--patch-size", "256",
                 "--compression", "none"]) == 0
    assert (data_dir / "hdf5" / "sample" / "data_sample.h5").exists()
    capsys.readouterr()
    assert main(["export", "hdf5", "--dataset", "sample", "--variant", "optimal_local"]) == 1
    err = capsys.readouterr().err
    assert "variant 'optimal_local' of 'sample' is not written yet" in err
    assert main(["export", "hdf5", "--dataset", "sample", "--roles", "nothing"]) == 1
    assert "no items with role ['nothing']" in capsys.readouterr().err
