"""The one tile geometry: counts, tile rectangles and the tiles a window touches, held to a
brute-force enumeration of every tile and to GDAL's own block layout."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from hypothesis import given, settings
from hypothesis import strategies as st

from ocog_lib.cog.grid import TileGrid, tile_span
from ocog_lib.cog.tiff_index import read_index
from tests.support.rasters import write_raster


@st.composite
def grid_and_window(draw) -> tuple[TileGrid, tuple[int, int, int, int]]:
    """A grid (tiles as small as 1 px, rasters smaller than one tile included) and a window
    inside it; at most 80 x 80 tiles, so the brute force stays quick."""
    th, tw = draw(st.integers(1, 700)), draw(st.integers(1, 700))
    height = draw(st.integers(1, min(2000, 80 * th)))
    width = draw(st.integers(1, min(2000, 80 * tw)))
    grid = TileGrid(height, width, th, tw)
    h, w = draw(st.integers(1, height)), draw(st.integers(1, width))
    row, col = draw(st.integers(0, height - h)), draw(st.integers(0, width - w))
    return grid, (row, col, h, w)


def brute_force_tiles(grid: TileGrid, row: int, col: int, h: int, w: int) -> list[tuple[int, int]]:
    """Every tile whose rectangle overlaps the window, row by row."""
    th, tw = grid.tile_height, grid.tile_width
    return [
        (ty, tx)
        for ty in range(-(-grid.height // th))
        for tx in range(-(-grid.width // tw))
        if ty * th < row + h and row < (ty + 1) * th and tx * tw < col + w and col < (tx + 1) * tw
    ]


@settings(max_examples=300, deadline=None)
@given(case=grid_and_window())
def test_window_tiles_are_exactly_the_tiles_the_window_overlaps(case):
    grid, window = case
    want = brute_force_tiles(grid, *window)
    assert grid.window_tiles(*window) == want
    rows, cols = grid.tiles_for_window(*window)
    assert [(ty, tx) for ty in rows for tx in cols] == want
    assert all(0 <= ty < grid.tiles_down and 0 <= tx < grid.tiles_across for ty, tx in want)


@settings(max_examples=200, deadline=None)
@given(case=grid_and_window())
def test_tile_rects_cover_the_raster_once(case):
    grid, _ = case
    cover = np.zeros((grid.height, grid.width), dtype=np.int32)
    for ty in range(grid.tiles_down):
        for tx in range(grid.tiles_across):
            top, left, h, w = grid.tile_rect(ty, tx)
            assert 0 < h <= grid.tile_height and 0 < w <= grid.tile_width
            cover[top : top + h, left : left + w] += 1
    assert (cover == 1).all()
    assert grid.tile_count == grid.tiles_down * grid.tiles_across


@settings(max_examples=200, deadline=None)
@given(start=st.integers(0, 5000), length=st.integers(1, 3000), tile=st.integers(1, 1024))
def test_tile_span_is_the_tiles_a_pixel_run_touches(start, length, tile):
    want = sorted({p // tile for p in range(start, start + length)})
    assert list(tile_span(start, length, tile)) == want


@pytest.mark.parametrize(("height", "width", "block"), [(700, 1000, 256), (512, 512, 512),
                                                        (300, 130, 128)])  # fmt: skip
def test_a_parsed_cog_has_gdals_block_layout(tmp_path, height, width, block):
    path = write_raster(tmp_path / "x.tif", np.zeros((1, height, width), np.uint8),
                        BLOCKSIZE=block, OVERVIEWS="NONE")  # fmt: skip
    grid = read_index(str(path)).grid
    assert isinstance(grid, TileGrid)
    with rasterio.open(path) as ds:
        gdal = {(ij, (w.row_off, w.col_off, w.height, w.width)) for ij, w in ds.block_windows(1)}
    ours = {((ty, tx), grid.tile_rect(ty, tx)) for ty in range(grid.tiles_down)
            for tx in range(grid.tiles_across)}  # fmt: skip
    assert ours == gdal
