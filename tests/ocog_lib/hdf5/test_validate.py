"""Bad packages are rejected on open, naming the file and the cause; pixels vs the COGs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from ocog_lib.errors import InputError
from ocog_lib.hdf5.dataset import Hdf5Dataset
from ocog_lib.hdf5.layout import sidecar_uri
from ocog_lib.hdf5.validate import compare_with_sources, validate_package


def _copy(package, tmp_path: Path) -> Path:
    src = package.result.path
    for p in [src, *package.result.sidecars.values()]:
        shutil.copy(p, tmp_path / p.name)
    return tmp_path / src.name


def _replace_dataset(path: Path, name: str, data: np.ndarray, chunks=None) -> None:
    with h5py.File(path, "r+") as f:
        del f[name]
        f.create_dataset(name, data=data, chunks=chunks)


def test_the_exported_package_is_valid(package):
    info = validate_package(package.result.path)
    res = package.result
    assert info.samples == res.samples
    assert info.modalities == {
        "image": {"shape": [4, 128, 128], "dtype": "uint16"},
        "label": {"shape": [1, 128, 128], "dtype": "uint8"},
    }
    assert {k: len(v) for k, v in info.splits.items()} == res.splits
    assert info.band_names == ["blue", "green", "red", "nir"]
    assert info.classes[0] == "water" and info.ignore_index == 255
    assert set(info.tile_info) == {s.tile_id for s in package.scenes}


def test_label_with_another_dtype_is_rejected(package, tmp_path):
    path = _copy(package, tmp_path)
    with h5py.File(path, "r") as f:
        label = f["label"][()].astype(np.uint16)
    _replace_dataset(path, "label", label, chunks=(1, 1, 128, 128))
    with pytest.raises(InputError, match=r"data_tiny\.h5: dataset 'label' is uint16; its "
                                         r"metadata says uint8"):
        Hdf5Dataset(path)


def test_image_with_another_shape_or_count_is_rejected(package, tmp_path):
    path = _copy(package, tmp_path)
    with h5py.File(path, "r") as f:
        image = f["image"][()]
    _replace_dataset(path, "image", image[:, :3], chunks=(1, 3, 128, 128))
    with pytest.raises(InputError, match=r"dataset 'image' is \(\d+, 3, 128, 128\); its "
                                         r"metadata says \(N, \*\[4, 128, 128\]\)"):
        validate_package(path)
    _replace_dataset(path, "image", image[:-1], chunks=(1, 4, 128, 128))
    with pytest.raises(InputError, match=r"dataset 'label' has \d+ samples, the image has"):
        validate_package(path)


def test_chunking_and_metadata_length_are_checked(package, tmp_path):
    path = _copy(package, tmp_path)
    with h5py.File(path, "r") as f:
        image, meta = f["image"][()], f["metadata"][()]
    _replace_dataset(path, "metadata", meta[:-2])
    with pytest.raises(InputError, match="'metadata' has shape .* the modalities hold"):
        validate_package(path)
    _replace_dataset(path, "metadata", meta)
    _replace_dataset(path, "image", image, chunks=(4, 4, 128, 128))
    with pytest.raises(InputError, match="chunked .* not one sample per chunk"):
        validate_package(path)


def test_split_indices_out_of_range_or_shared_are_rejected(package, tmp_path):
    path = _copy(package, tmp_path)
    n = package.result.samples
    bad = tmp_path / "my_splits.json"
    bad.write_text(json.dumps({"train": [0, 1], "val": [n + 5], "test": []}))
    with pytest.raises(InputError, match=rf"my_splits\.json: split 'val' has indices outside "
                                         rf"the package's {n} samples: \[{n + 5}\]"):
        Hdf5Dataset(path, "train", splits_path=bad)
    bad.write_text(json.dumps({"train": [0, 1], "val": [1], "test": []}))
    with pytest.raises(InputError, match="sample 1 is in both 'train' and 'val'"):
        validate_package(path, splits_path=bad)
    bad.write_text(json.dumps({"train": [0], "validation": [1]}))
    with pytest.raises(InputError, match="keys"):
        validate_package(path, splits_path=bad)
    bad.write_text(json.dumps({"train": [0, 2], "val": [1], "test": []}))
    ds = Hdf5Dataset(path, "train", splits_path=bad)  # hand-made splits: range-checked only
    assert ds.indices.tolist() == [0, 2]


def test_sidecars_not_written_with_the_package_are_rejected(package, tmp_path):
    path = _copy(package, tmp_path)
    stats = Path(sidecar_uri(str(path), "band_stats"))
    data = json.loads(stats.read_text())
    data["image"]["mean"][0] += 1.0
    stats.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"data_tiny_band_stats\.json: not the band_stats file "
                                         r"written with .*sha256 differs"):
        validate_package(path)
    data["image"]["mean"] = data["image"]["mean"][:2]
    stats.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"image\.mean must list one value per band \(4\)"):
        validate_package(path, check_sidecars=False)
    stats.unlink()
    with pytest.raises(InputError, match=r"data_tiny_band_stats\.json: sidecar of .* missing"):
        validate_package(path)


def test_files_that_are_not_packages_are_named(package, tmp_path):
    junk = tmp_path / "data_junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(InputError, match=r"data_junk\.h5: not a readable HDF5 file"):
        validate_package(junk)
    with pytest.raises(InputError, match=r"data_none\.h5: package not found"):
        validate_package(tmp_path / "data_none.h5")
    plain = tmp_path / "data_plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(InputError, match=r"data_plain\.h5: not an ocog package"):
        validate_package(plain)
    path = _copy(package, tmp_path)
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(InputError, match="format version 99 is not the supported 1"):
        validate_package(path)


def test_compare_with_sources_finds_a_changed_pixel(package, tmp_path):
    ok = compare_with_sources(package.result.path, samples=1000)
    assert ok.passed and len(ok.checked) == package.result.samples
    path = _copy(package, tmp_path)
    with h5py.File(path, "r+") as f:
        f["image"][5, 2, 7, 9] += 1
        f["label"][9, 0, 0, 0] = 42
    bad = compare_with_sources(path, samples=1000)
    assert not bad.passed
    assert len(bad.mismatches) == 2
    assert bad.mismatches[0].startswith("sample 5 (") and "image differs" in bad.mismatches[0]
    assert "in 1 values" in bad.mismatches[0]
    assert bad.mismatches[1].startswith("sample 9 (") and "label differs" in bad.mismatches[1]
