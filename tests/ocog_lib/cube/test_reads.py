"""Tiles, boxes and points of the cube equal rio-tiler's reads of the same COGs.

rio-tiler 9 (GDAL's WarpedVRT) is the reference: exact for nearest, NaN positions
included; within 1 DN for bilinear. Zooms 11 and 12 read overviews, 13 downsamples the
full resolution, 14 and 16 magnify it; every tile at zoom <= 13 and the zoom-14 tile
east of the data are partly outside it.
"""

from __future__ import annotations

import json
import os
import warnings

import morecantile
import numpy as np
import pytest
from rio_tiler.io import Reader
from rio_tiler.models import ImageData

from ocog_lib.cube import reads
from ocog_lib.cube.masks import scl_keep
from ocog_lib.cube.plan import plan_read
from ocog_lib.cube.reads import read_bbox, read_point, read_raster, read_tile, tile_view
from ocog_lib.cube.sources import raster_info
from ocog_lib.cube.stack import SceneStack
from ocog_lib.errors import InputError
from tests.ocog_lib.cube.conftest import (
    CLOUD_ALL,
    CLOUD_ONE,
    DATES,
    HOLE,
    LAT,
    LON,
    TRANSFORM,
    bands_of,
    build_stack,
    lonlat,
    write_cog,
    write_tiff,
)
from tests.support.rasters import real_pixels

TMS = morecantile.tms.get("WebMercatorQuad")
ZOOMS = [(11, 0), (12, 0), (13, 0), (14, 0), (14, 1), (16, 0)]


def _xyz(z: int, dx: int = 0, lon: float = LON, lat: float = LAT) -> tuple[int, int, int]:
    t = TMS.tile(lon, lat, z)
    return t.x + dx, t.y, z


def _zxy(z: int, dx: int = 0) -> tuple[int, int, int]:
    x, y, z = _xyz(z, dx)
    return z, x, y


def _nan(img: ImageData, band: int = 0) -> np.ndarray:
    """rio-tiler's band as float32, masked pixels NaN."""
    arr = img.array
    return np.where(arr.mask[band], np.nan, arr.data[band]).astype(np.float32)


def _rio(path, x, y, z, **kw) -> ImageData:
    with Reader(str(path)) as r:
        return r.tile(x, y, z, tilesize=256, **kw)


def _mine(path, x, y, z, **kw) -> np.ndarray:
    return read_raster(str(path), tile_view("WebMercatorQuad", z, x, y), **kw)


def _close(mine: np.ndarray, ref: np.ndarray, atol: float = 0.0) -> None:
    np.testing.assert_array_equal(np.isnan(mine), np.isnan(ref))
    if atol:
        assert np.nanmax(np.abs(mine - ref)) <= atol
    else:
        np.testing.assert_array_equal(mine, ref)


@pytest.mark.parametrize("z, dx", ZOOMS)
@pytest.mark.parametrize("resampling", ["nearest", "bilinear"])
def test_single_band_tiles_equal_rio_tiler(cube_files, z, dx, resampling):
    path = cube_files.red[0]
    x, y, z = _xyz(z, dx)
    ref = _nan(_rio(path, x, y, z, indexes=1, resampling_method=resampling))
    assert not np.isnan(ref).all()
    assert np.isnan(ref).any() == (z <= 13 or dx == 1)  # partly outside the data
    _close(_mine(path, x, y, z, resampling=resampling), ref, 1 if resampling != "nearest" else 0)
    level = plan_read(raster_info(str(path)).geometry, tile_view("WebMercatorQuad", z, x, y),
                      resampling=resampling).level  # fmt: skip
    assert level == {11: 2, 12: 1}.get(z, 0)


@pytest.mark.parametrize("z, dx", [(12, 0), (13, 0), (14, 1), (16, 0)])
def test_bilinear_warp_within_one_dn_of_rio_tiler(cube_files, z, dx):
    path = cube_files.nir[1]
    x, y, z = _xyz(z, dx)
    ref = _rio(path, x, y, z, indexes=1, resampling_method="bilinear",
               reproject_method="bilinear")  # fmt: skip
    _close(_mine(path, x, y, z, resampling="bilinear", reproject="bilinear"), _nan(ref), 1)


def _rio_masked(files, scene: int, x, y, z, expression: str | None = None) -> np.ndarray:
    """rio-tiler's red/nir (or their expression) of one scene, SCL-masked pixels NaN."""
    red, nir = (_rio(p[scene], x, y, z, indexes=1) for p in (files.red, files.nir))
    if expression is None:
        out = _nan(nir)
    else:
        both = ImageData(np.ma.concatenate([red.array, nir.array]), band_names=["b1", "b2"])
        out = _nan(both.apply_expression(expression))
    scl = _rio(files.scl[scene], x, y, z, indexes=1).array.data[0]
    out[~scl_keep(scl)] = np.nan
    return out


@pytest.mark.parametrize("z, dx", [(12, 0), (14, 1), (15, 0)])
def test_cube_tile_equals_rio_tiler_expression(cube_files, z, dx):
    stack = SceneStack.load(cube_files.folder)
    x, y, z = _xyz(z, dx)
    tile = read_tile(stack, z, x, y, expression="(nir - red) / (nir + red)", reducer="first",
                     start=DATES[0], end=DATES[0])  # fmt: skip
    assert tile.scenes == ("s0",) and tile.data.dtype == np.float32
    _close(tile.data, _rio_masked(cube_files, 0, x, y, z, "(b2-b1)/(b2+b1)"))


def _cloud_tile() -> tuple[int, int, int]:
    rows, cols = CLOUD_ALL
    return _xyz(14, 0, *lonlat((rows.start + rows.stop) / 2, (cols.start + cols.stop) / 2))


def test_median_equals_numpy_and_all_cloud_stays_nan(cube_files):
    stack = SceneStack.load(cube_files.folder)
    x, y, z = _cloud_tile()
    per_scene = np.stack([_rio_masked(cube_files, s, x, y, z) for s in range(3)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = np.nanmedian(per_scene, axis=0)
    tile = read_tile(stack, z, x, y, expression="nir", reducer="median")
    assert tile.scenes == ("s0", "s1", "s2")
    _close(tile.data, ref)
    clouded = np.isnan(per_scene).all(axis=0)
    assert clouded.sum() > 1000 and np.isnan(tile.data[clouded]).all()
    count = read_tile(stack, z, x, y, expression="nir", reducer="count").data
    assert np.isnan(count[clouded]).all() and set(np.unique(count[~clouded])) <= {1.0, 2.0, 3.0}


@pytest.mark.parametrize("layout", ["no_overviews", "band_interleaved", "pixel_interleaved"])
@pytest.mark.parametrize("resampling", ["nearest", "bilinear"])
def test_other_layouts_equal_rio_tiler(tmp_path, layout, resampling):
    arr = real_pixels(4, 512, 512, "uint16", seed=7)
    arr[:, 100:140, 300:400] = 0
    path, band = tmp_path / f"{layout}.tif", 3
    if layout == "no_overviews":
        write_cog(path, arr[2:3], overviews=False)
        band = 1
    elif layout == "band_interleaved":
        write_tiff(path, arr, TILED="YES", BLOCKXSIZE=128, BLOCKYSIZE=128, INTERLEAVE="BAND",
                   COMPRESS="ZSTD")  # fmt: skip
    else:
        write_cog(path, arr, blocksize=256)
    assert raster_info(str(path)).fallback is None
    for z, dx in [(12, 0), (13, 0), (14, 1)]:
        x, y, z = _xyz(z, dx)
        ref = _nan(_rio(path, x, y, z, indexes=band, resampling_method=resampling))
        mine = _mine(path, x, y, z, band=band, resampling=resampling)
        _close(mine, ref, 1 if resampling != "nearest" else 0)


def test_two_bands_of_one_file_equal_rio_tiler_expression(tmp_path):
    arr = real_pixels(4, 512, 512, "uint16", seed=5)
    arr[:, 10:50, 10:90] = 0
    path = write_tiff(tmp_path / "four.tif", arr, TILED="YES", BLOCKXSIZE=256,
                      BLOCKYSIZE=256, INTERLEAVE="BAND")  # fmt: skip
    from ocog_lib.cube.expression import Expression

    expr = Expression.parse("(B5 - B4) / (B5 + B4)", ["B4", "B5"])
    for z, dx in [(12, 0), (14, 1)]:
        x, y, z = _xyz(z, dx)
        ref = _nan(_rio(path, x, y, z, expression="(b4-b3)/(b4+b3)"))
        bands = {"B4": _mine(path, x, y, z, band=3), "B5": _mine(path, x, y, z, band=4)}
        _close(expr.evaluate(bands), ref)


def test_a_layout_the_fast_path_cannot_decode_is_read_by_gdal(tmp_path):
    arr = real_pixels(1, 512, 512, "uint16", seed=2)
    path = write_tiff(tmp_path / "striped.tif", arr, TILED="NO", overviews=())
    assert "striped" in raster_info(str(path)).fallback
    for z, dx in [(13, 0), (14, 1)]:
        x, y, z = _xyz(z, dx)
        _close(_mine(path, x, y, z), _nan(_rio(path, x, y, z, indexes=1)))


def test_point_series_equals_rio_tiler_point(cube_files):
    stack = SceneStack.load(cube_files.folder)
    values = read_point(stack, LON, LAT, expression="red")
    assert [v.scene_id for v in values] == ["s0", "s1", "s2"]
    for v, path in zip(values, cube_files.red, strict=True):
        with Reader(str(path)) as r:
            assert v.value == float(r.point(LON, LAT, indexes=1).data[0])
    lon, lat = lonlat(CLOUD_ALL[0].start + 5, CLOUD_ALL[1].start + 5)
    assert [v.value for v in read_point(stack, lon, lat, expression="nir")] == [None] * 3
    lon, lat = lonlat(CLOUD_ONE[0].start + 5, CLOUD_ONE[1].start + 5)
    got = [v.value for v in read_point(stack, lon, lat, expression="nir", start=DATES[1])]
    assert got[0] is None and got[1] is not None  # s1 masked there, s2 not
    with pytest.raises(InputError, match="outside every one of the 3 selected scenes"):
        read_point(stack, 10.0, 50.0, expression="red")


def test_bbox_equals_rio_tiler_part_and_aligned_utm_box_is_the_pixels(cube_files):
    stack = SceneStack.load(cube_files.folder)
    x, y, z = _xyz(14, 1)
    left, bottom, right, top = TMS.xy_bounds(morecantile.Tile(x, y, z))
    box = read_bbox(stack, (left, bottom, right, top), crs="EPSG:3857",
                    resolution=(right - left) / 256, expression="nir", reducer="first",
                    start=DATES[0], end=DATES[0])  # fmt: skip
    with Reader(str(cube_files.nir[0])) as r:
        part = r.part((left, bottom, right, top), dst_crs=TMS.rasterio_crs,
                      bounds_crs=TMS.rasterio_crs, width=256, height=256, indexes=1)  # fmt: skip
    ref = _nan(part)
    with Reader(str(cube_files.scl[0])) as r:
        scl = r.part((left, bottom, right, top), dst_crs=TMS.rasterio_crs,
                     bounds_crs=TMS.rasterio_crs, width=256, height=256, indexes=1)  # fmt: skip
    ref[~scl_keep(scl.array.data[0])] = np.nan
    _close(box.data, ref)
    assert box.scenes == ("s0",) and box.crs == "EPSG:3857"
    utm = read_bbox(stack, (501000, 3996000, 502000, 3997000), crs="EPSG:32618",
                    resolution=10, expression="nir", reducer="first", start=DATES[0],
                    end=DATES[0])  # fmt: skip
    expected = bands_of(0)[1, 300:400, 100:200].astype(np.float32)
    expected[expected == 0] = np.nan
    assert utm.transform == TRANSFORM * TRANSFORM.translation(100, 300)
    _close(utm.data, expected)


def test_a_tile_fetches_only_its_window_once(tmp_path):
    files = build_stack(tmp_path / "fresh")
    stack = SceneStack.load(files.folder)
    x, y, z = _xyz(16)
    cold = read_tile(stack, z, x, y, expression="nir")
    warm = read_tile(stack, z, x, y, expression="nir")
    stored = sum(os.path.getsize(p) for p in files.nir + files.scl)
    assert 0 < cold.bytes_fetched < stored / 4 and warm.bytes_fetched == 0
    np.testing.assert_array_equal(cold.data, warm.data)
    assert cold.compute_ms > 0 and warm.scenes == ("s0", "s1", "s2")


def test_bad_input_names_the_input_and_the_cause(cube_files, tmp_path, monkeypatch):
    stack = SceneStack.load(cube_files.folder)
    x, y, z = _xyz(14)
    cases = [
        (dict(z=14, x=0, y=0), "tile 14/0/0", "outside the data"),
        (dict(z=25, x=0, y=0), "tile 25/0/0", "zoom 25 is outside"),
        (dict(tms="Nope"), "tms=Nope", "unknown TileMatrixSet"),
        (dict(start="2030-01-01"), "start=2030-01-01", "no scene of stack 'test' selected"),
        (dict(expression="swir / red"), "swir", "unknown band"),
        (dict(resampling="cubic"), "resampling=cubic", "one of nearest, bilinear"),
        (dict(reducer="percentile"), "p=None", "needs p"),
        (dict(size=0), "size=0", "1..4096"),
    ]  # fmt: skip
    for change, what, cause in cases:
        args = dict(z=z, x=x, y=y, expression="nir", tms="WebMercatorQuad") | change
        with pytest.raises(InputError) as err:
            read_tile(stack, args.pop("z"), args.pop("x"), args.pop("y"), **args)
        assert err.value.what == what and cause in err.value.cause, (change, err.value)
    monkeypatch.setattr(reads, "MAX_SOURCE_PIXELS", 1000)
    with pytest.raises(InputError, match="zoom too coarse"):
        read_tile(stack, *_zxy(13), expression="nir")


def test_a_dead_file_is_named(tmp_path):
    files = build_stack(tmp_path / "dead")
    stack = SceneStack.load(files.folder)
    read_tile(stack, *_zxy(16), expression="red")
    os.remove(files.red[1])
    with pytest.raises(InputError) as err:
        read_tile(stack, *_zxy(15), expression="red")
    assert err.value.what == str(files.red[1]) and "not found" in err.value.cause


def test_a_scene_all_cloud_leaves_nan_where_no_other_scene_is_valid(tmp_path):
    arr = bands_of(0)  # HOLE is nodata in this one
    scl = np.full((1, 256, 256), 4, np.uint8)
    scenes = []
    for i, cloud in enumerate((9, None)):
        (tmp_path / f"c{i}").mkdir()
        write_cog(tmp_path / f"c{i}" / "B08.tif", arr[1:] if cloud is None else arr[1:] + 1)
        mask = scl if cloud is None else np.full_like(scl, cloud)
        write_cog(tmp_path / f"c{i}" / "SCL.tif", mask, transform=TRANSFORM * TRANSFORM.scale(2))
        scenes.append({"id": f"c{i}", "datetime": DATES[i], "cloud_cover": 100.0 if cloud else 0,
                       "assets": {"B08": f"c{i}/B08.tif", "SCL": f"c{i}/SCL.tif"}})  # fmt: skip
    doc = {"name": "clouds", "bands": ["B08"], "mask": {"kind": "scl", "asset": "SCL"},
           "scenes": scenes}  # fmt: skip
    (tmp_path / "stack.json").write_text(json.dumps(doc))
    stack = SceneStack.load(tmp_path)
    hole = lonlat((HOLE[0].start + HOLE[0].stop) / 2, (HOLE[1].start + HOLE[1].stop) / 2)
    x, y, z = _xyz(15, 0, *hole)
    tile = read_tile(stack, z, x, y, expression="B08", reducer="median")
    clear = _nan(_rio(tmp_path / "c1" / "B08.tif", x, y, z, indexes=1))  # the other scene
    assert np.isnan(clear).sum() > 100  # its hole is in the tile
    _close(tile.data, clear)  # cloud everywhere in c0: NaN where c1 has no value, never 0
    assert np.isnan(read_tile(stack, z, x, y, expression="B08", reducer="sum")
                    .data[np.isnan(clear)]).all()  # fmt: skip
