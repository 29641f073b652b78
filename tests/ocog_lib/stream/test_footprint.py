"""Tile bytes a window sequence must fetch, checked against GDAL's own block sizes."""

from __future__ import annotations

import numpy as np
import rasterio

from ocog_lib.stream.footprint import tile_bytes_per_sample
from ocog_lib.stream.rasters import open_raster
from tests.support.rasters import real_pixels, write_raster


def _gdal_block_bytes(path, blocks):
    with rasterio.open(path) as ds:
        return sum(ds.block_size(1, ty, tx) for ty, tx in blocks)


def test_windows_pay_for_every_tile_they_touch_once_per_group(tmp_path):
    arr = real_pixels(2, 256, 256, "uint16", seed=5)
    path = write_raster(tmp_path / "f.tif", arr, compress="DEFLATE", blocksize=64)
    rasters = [open_raster(str(path))]
    inside = np.array([[0, 0, 0]])  # one tile
    across = np.array([[0, 32, 32]])  # four tiles
    assert tile_bytes_per_sample(inside, rasters, 64) == _gdal_block_bytes(path, [(0, 0)])
    four = [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert tile_bytes_per_sample(across, rasters, 64) == _gdal_block_bytes(path, four)
    both = np.concatenate([inside, across])
    # plain: each window fetches its own tiles; grouped, the shared tile is fetched once
    assert tile_bytes_per_sample(both, rasters, 64) == (
        _gdal_block_bytes(path, [(0, 0)]) + _gdal_block_bytes(path, four)
    ) / 2
    assert tile_bytes_per_sample(both, rasters, 64, group=2) == _gdal_block_bytes(path, four) / 2
