"""A local file changed while it streams: an InputError naming it, never SIGBUS, never
another file's bytes. Uncompressed files take the direct path (no decode, no cache);
compressed ones the tile cache; both read through `LocalFile`.

Truncation runs in a subprocess: a memory-mapped file truncated under the reader kills
the process with SIGBUS, which would take pytest down with it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from ocog_lib.errors import InputError
from ocog_lib.stream.dataset import make_stream
from tests.support.rasters import real_pixels, write_raster

REPO = Path(__file__).resolve().parents[3]
# no tile cache: every batch reads the file, so a change is met whatever the timing
KW = dict(
    sampler="random", patch_size=64, batch_size=4, length=64, seed=5, threads=2, prefetch=2,
    cache_mb=0,
)


def _raster(path: Path, compress: str = "NONE", seed: int = 0, bands: int = 3, **opts) -> Path:
    arr = real_pixels(bands, 256, 256, "uint16", seed=seed)
    return write_raster(path, arr, compress=compress, blocksize=64, **opts)


def _check_until_error(stream, original: Path, change) -> tuple[int, InputError]:
    """Patches read before the error must be the original file's; returns (#, error)."""
    n = 0
    p = stream.cfg.patch_size
    with rasterio.open(original) as ds, pytest.raises(InputError) as err:
        for i, batch in enumerate(stream):
            for b, (_, row, col) in enumerate(batch["window"].tolist()):
                want = ds.read(window=Window(col, row, p, p))
                np.testing.assert_array_equal(batch["image"][b].numpy(), want)
                n += 1
            if i == 0:
                change()
    stream.close()
    return n, err.value


_TRUNCATE = """
import os, sys
from ocog_lib.errors import OcogError
from ocog_lib.stream.dataset import make_stream

path, workers = sys.argv[1], int(sys.argv[2])
stream = make_stream([path], workers=workers, start_method="fork" if workers else None, **{kw})
try:
    for i, batch in enumerate(stream.loader()):
        if i == 0:
            os.truncate(path, os.path.getsize(path) // 3)
except OcogError as exc:
    print(f"{{type(exc).__name__}}: {{exc}}")
    sys.exit(1)
print("no error")
"""


@pytest.mark.parametrize("workers", [0, 2])
def test_truncated_while_streaming_raises_and_does_not_crash(tmp_path, workers):
    path = _raster(tmp_path / "raw.tif")
    script = textwrap.dedent(_TRUNCATE).format(kw=repr(KW))
    env = dict(os.environ, PYTHONPATH=os.environ.get("PYTHONPATH", str(REPO)))
    done = subprocess.run(
        [sys.executable, "-c", script, str(path), str(workers)],
        capture_output=True, text=True, timeout=120, env=env, cwd=REPO,
    )  # fmt: skip
    out = done.stdout + done.stderr[-2000:]
    assert done.returncode == 1, f"exit {done.returncode} (SIGBUS is -7 / 135): {out}"
    assert "InputError" in done.stdout and "changed while streaming" in done.stdout, out
    assert str(path) in done.stdout


@pytest.mark.parametrize("compress", ["NONE", "DEFLATE"])
def test_overwritten_in_place_with_another_layout_raises(tmp_path, compress):
    """The file keeps its inode and grows: no SIGBUS is possible, garbage was."""
    path = _raster(tmp_path / "img.tif", compress)
    original = _raster(tmp_path / "copy.tif", compress)  # the same bytes, kept aside
    other = _raster(tmp_path / "other.tif", "NONE", seed=9, bands=4, interleave="band")
    assert other.stat().st_size > path.stat().st_size

    def overwrite():
        with open(path, "r+b") as f:
            f.write(other.read_bytes())

    stream = make_stream([path], **KW)
    assert stream.rasters[0].direct == (compress == "NONE")
    n, err = _check_until_error(stream, original, overwrite)
    assert n >= 4 and err.what == str(path) and "changed while streaming" in err.cause


@pytest.mark.parametrize("compress", ["NONE", "DEFLATE"])
def test_replaced_by_another_file_of_the_same_size_raises(tmp_path, compress):
    """A new inode at the path (an atomic rewrite): reading on from the old descriptor
    would mix two files across processes; it fails instead."""
    path = _raster(tmp_path / "img.tif", compress)
    original = _raster(tmp_path / "copy.tif", compress)
    data = bytearray(path.read_bytes())
    data[-4096:] = bytes(255 - b for b in data[-4096:])  # other pixels, same size
    swap = tmp_path / "img.tif.tmp"
    swap.write_bytes(bytes(data))

    stream = make_stream([path], **KW)
    n, err = _check_until_error(stream, original, lambda: os.replace(swap, path))
    assert n >= 4 and "changed while streaming: replaced" in err.cause


def test_deleted_while_streaming_raises(tmp_path):
    path = _raster(tmp_path / "img.tif")
    original = _raster(tmp_path / "copy.tif")
    stream = make_stream([path], **KW)
    _, err = _check_until_error(stream, original, path.unlink)
    assert "changed while streaming: the file is gone" in str(err)


def test_direct_reads_equal_rasterio_for_chunky_and_planar(tmp_path):
    for name, opts in {"chunky": {}, "planar": {"interleave": "band"}}.items():
        path = _raster(tmp_path / f"{name}.tif", **opts)
        stream = make_stream([path], **{**KW, "bands": (2, 0)})
        assert stream.rasters[0].direct
        with rasterio.open(path) as ds:
            for batch in stream:
                for b, (_, row, col) in enumerate(batch["window"].tolist()):
                    want = ds.read([3, 1], window=Window(col, row, 64, 64))
                    np.testing.assert_array_equal(batch["image"][b].numpy(), want)
        stream.close()


def test_a_changed_file_is_skipped_whole_under_skip(tmp_path):
    """on_error="skip": once a file read by pread is replaced, every sample a batch read
    from it is left out (its bytes may be the new file's); the other file streams on."""
    paths = [_raster(tmp_path / "a.tif"), _raster(tmp_path / "b.tif", seed=3)]
    originals = [_raster(tmp_path / "a0.tif"), _raster(tmp_path / "b0.tif", seed=3)]
    swap = tmp_path / "a.tif.tmp"
    data = bytearray(paths[0].read_bytes())
    data[-4096:] = bytes(255 - b for b in data[-4096:])
    swap.write_bytes(bytes(data))
    stream = make_stream([str(p) for p in paths], **{**KW, "length": 128, "on_error": "skip"})
    assert all(r.direct for r in stream.rasters)
    p, late = stream.cfg.patch_size, {0: 0, 1: 0}  # samples of batches begun after the swap
    with rasterio.open(originals[0]) as a, rasterio.open(originals[1]) as b:
        for i, batch in enumerate(stream):
            for k, (fid, row, col) in enumerate(batch["window"].tolist()):
                want = (a, b)[fid].read(window=Window(col, row, p, p))
                np.testing.assert_array_equal(batch["image"][k].numpy(), want)
                late[fid] += i > KW["prefetch"]  # those ahead may be made before the swap
            if i == 0:
                os.replace(swap, paths[0])
    stream.close()
    assert late[0] == 0 and late[1] > 0, late
    assert stream.stats.skipped > 0
