"""The header parser agrees with GDAL about every tile and every level."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from ocog_lib.cog.tiff_index import read_georef, read_index
from ocog_lib.storage import ByteRange, LocalFile, merge_ranges
from tests.support.rasters import real_pixels, write_raster


def test_index_matches_gdal(tmp_path):
    path = write_raster(
        tmp_path / "a.tif",
        real_pixels(4, 700, 900, "uint16"),
        compress="ZSTD",
        predictor=2,
        blocksize=256,
        overview_count=2,
    )
    idx = read_index(str(path))
    with rasterio.open(path) as ds:
        assert (idx.height, idx.width, idx.bands) == (ds.height, ds.width, ds.count)
        assert (idx.tile_height, idx.tile_width) == ds.block_shapes[0]
        assert idx.dtype == ds.dtypes[0]
        assert len(idx.levels) == 1 + len(ds.overviews(1))
        # GDAL's own tile offsets (TIFFTAG via the TIFF metadata domain)
        off = int(ds.get_tag_item("BLOCK_OFFSET_1_2", "TIFF", bidx=1))
        size = int(ds.get_tag_item("BLOCK_SIZE_1_2", "TIFF", bidx=1))
    assert idx.tile_entry(0, 0, 2, 1) == (off, size)
    assert idx.compression_name == "ZSTD" and idx.predictor == 2 and idx.fast_path


def test_index_pickles_without_handles(tmp_path):
    import pickle

    path = write_raster(tmp_path / "b.tif", real_pixels(2, 300, 300, "uint16"), blocksize=128)
    src = LocalFile(path)
    src.read(0, 8)
    clone = pickle.loads(pickle.dumps(src))
    assert clone._fd is None and clone.read(0, 8) == src.read(0, 8)
    idx = read_index(str(path))
    assert pickle.loads(pickle.dumps(idx)).tile_entry(0, 0, 1, 1) == idx.tile_entry(0, 0, 1, 1)


def test_merge_ranges_coalesces_adjacent_reads():
    ranges = [ByteRange(100, 50), ByteRange(0, 100), ByteRange(300, 10), ByteRange(150, 5)]
    merged = merge_ranges(ranges)
    assert [(m.offset, m.length) for m, _ in merged] == [(0, 155), (300, 10)]
    assert sorted(merged[0][1]) == [0, 1, 3]
    assert len(merge_ranges(ranges, max_gap=200)) == 1


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
@pytest.mark.parametrize(
    "crs,transform,point",
    [
        ("EPSG:32618", rasterio.Affine(10, 0, 500000, 0, -10, 4000000), False),
        ("EPSG:32618", rasterio.Affine(10, 0, 500000, 0, -10, 4000000), True),  # PixelIsPoint
        ("EPSG:32618", rasterio.Affine(10, 0.5, 500000, 0.25, -10, 4000000), False),  # rotated
        ("EPSG:4326", rasterio.Affine(1e-4, 0, -73.5, 0, -1e-4, 40.5), False),
        (None, None, False),
    ],
)
@pytest.mark.parametrize("tiled", [True, False])
def test_georef_matches_gdal(tmp_path, crs, transform, point, tiled):
    path = tmp_path / "g.tif"
    profile = dict(driver="GTiff", width=64, height=48, count=1, dtype="uint8", tiled=tiled)
    if tiled:
        profile.update(blockxsize=32, blockysize=32)
    if crs:
        profile.update(crs=crs, transform=transform)
    with rasterio.open(path, "w", **profile) as ds:
        if point:
            ds.update_tags(AREA_OR_POINT="Point")
        ds.write(np.zeros((1, 48, 64), np.uint8))
    g = read_georef(LocalFile(str(path)))
    if tiled:
        assert read_index(str(path)).georef == g
    with rasterio.open(path) as ds:
        if crs is None:
            assert (g.crs, g.transform) == ((), None)
            return
        assert g.crs == (("EPSG", ds.crs.to_epsg()),)
        np.testing.assert_allclose(g.transform, tuple(ds.transform)[:6], rtol=1e-12)
        assert (ds.tags().get("AREA_OR_POINT") == "Point") == point
