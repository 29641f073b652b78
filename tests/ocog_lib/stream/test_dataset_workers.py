"""With DataLoader workers, an ocog error reaches the caller as itself: type and message."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from ocog_lib.errors import InputError, OcogError
from ocog_lib.stream.dataset import CogStream, make_stream
from tests.support.rasters import real_pixels, write_raster

GRID = dict(sampler="grid", patch_size=128, batch_size=2)


def corrupt_raster(path):
    """A 4-tile COG whose first tile's bytes are garbage (a real decode failure)."""
    write_raster(path, real_pixels(4, 256, 256, "uint16"), compress="DEFLATE", blocksize=128)
    off, n = make_stream([path], **GRID).rasters[0].index.tile_entry(0, 0, 0, 0)
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(b"\xff" * n)
    return path


def error_in_process(path) -> InputError:
    """What workers=0 raises: the reference the workers' error must equal."""
    with pytest.raises(InputError) as info:
        list(make_stream([path], **GRID))
    return info.value


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_worker_error_keeps_its_type_and_message(tmp_path, start_method):
    path = corrupt_raster(tmp_path / "corrupt.tif")
    want = error_in_process(path)
    stream = make_stream([path], **GRID, workers=2, start_method=start_method)
    with pytest.raises(OcogError) as info:
        for _ in stream.loader():
            pass
    got = info.value
    assert type(got) is type(want)
    assert str(got) == str(want) and "corrupt.tif" in str(got)
    assert (got.what, got.cause) == (want.what, want.cause)
    assert any("DataLoader worker" in note for note in got.__notes__)


def test_workers_deliver_every_batch_when_nothing_fails(tmp_path):
    path = write_raster(
        tmp_path / "ok.tif", real_pixels(2, 256, 256, "uint16"), compress="ZSTD", blocksize=128
    )
    stream = make_stream([path], **GRID, workers=2)
    seen = 0
    with rasterio.open(path) as ds:
        for batch in stream.loader():
            for b, (_, row, col) in enumerate(batch["window"].tolist()):
                ref = ds.read(window=Window(col, row, 128, 128))
                np.testing.assert_array_equal(batch["image"][b].numpy(), ref)
                seen += 1
    assert seen == len(stream.windows) == 4


def test_given_windows_keep_worker_errors_too(tmp_path):
    """Training's path: windows chosen by the caller, for the stream and for its loader."""
    path = corrupt_raster(tmp_path / "corrupt.tif")
    want = error_in_process(path)
    base = make_stream([path], **GRID)
    cfg = replace(base.cfg, workers=2)
    stream = CogStream([str(path)], None, cfg, windows=base.windows, rasters=base.rasters)
    for batches in (stream.loader(), base.loader(base.windows[::-1]), stream.loader(base.windows)):
        with pytest.raises(OcogError) as info:
            list(batches)
        assert type(info.value) is type(want) and str(info.value) == str(want)


def test_given_windows_are_what_the_workers_read(tmp_path):
    path = write_raster(tmp_path / "a.tif", real_pixels(2, 256, 256, "uint16"),
                        compress="DEFLATE", blocksize=128)  # fmt: skip
    windows = np.array([[0, 128, 0], [0, 3, 7], [0, 0, 128], [0, 100, 50]])
    stream = make_stream([path], **{**GRID, "workers": 2})
    seen = [tuple(w) for b in stream.loader(windows) for w in b["window"].tolist()]
    assert sorted(seen) == sorted(map(tuple, windows.tolist()))
