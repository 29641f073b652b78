"""The ceilings: tiles counted per sample (masks included) and the memory copy rate."""

from __future__ import annotations

import numpy as np
import pytest

from ocog_lib.bench.limits import decode_limit, memory_limit
from tests.support.rasters import real_pixels, write_raster


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("limits")
    img = write_raster(
        d / "img.tif", real_pixels(4, 256, 256, "uint16"), compress="ZSTD", blocksize=128
    )
    mask = (real_pixels(1, 256, 256, "uint16") % 5).astype(np.uint8)
    msk = write_raster(d / "mask.tif", mask, compress="ZSTD", blocksize=128)
    raw = write_raster(d / "raw.tif", real_pixels(4, 256, 256, "uint16"), blocksize=128)
    return str(img), str(msk), str(raw)


def test_decode_limit_counts_the_tiles_of_each_window(pair):
    img, msk, _ = pair
    # one window inside a tile, one straddling four tiles
    wins = np.array([[0, 0, 0], [0, 100, 100]])
    alone = decode_limit([img], wins, 64, threads=1, min_seconds=0.05)
    assert alone.tiles_per_sample == pytest.approx((1 + 4) / 2)
    with_masks = decode_limit([img], wins, 64, threads=1, min_seconds=0.05, masks=[msk])
    assert with_masks.tiles_per_sample == pytest.approx(2 * alone.tiles_per_sample)
    assert alone.samples_per_s > 0 and with_masks.samples_per_s > 0
    assert alone.mb_per_s == pytest.approx(alone.samples_per_s * 64 * 64 * 4 * 2 / 1e6)


def test_decode_limit_needs_one_mask_per_image(pair):
    img, msk, _ = pair
    with pytest.raises(ValueError, match="2 masks for 1 images"):
        decode_limit([img], np.array([[0, 0, 0]]), 64, masks=[msk, msk])


def test_memory_limit_counts_mask_bytes_per_patch(pair):
    *_, raw = pair
    lim = memory_limit([raw], 64, 4, 2, threads=1, min_seconds=0.05, chunk=1 << 16)
    assert lim.kind == "memory" and lim.mb_per_s > 0
    # patches/s is the copy rate over the bytes of one patch (mask bytes included)
    assert lim.samples_per_s == pytest.approx(lim.mb_per_s * 1e6 / (64 * 64 * 8))
    masked = memory_limit(
        [raw], 64, 4, 2, threads=1, min_seconds=0.05, chunk=1 << 16, mask_itemsize=1
    )
    assert masked.samples_per_s == pytest.approx(masked.mb_per_s * 1e6 / (64 * 64 * 9))
