"""A time stack found by STAC (rustac serve on loopback), read where its COGs are."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ocog_lib.cube.reads import read_bbox, read_point
from ocog_lib.cube.stac import build_stac_stack, stack_document
from ocog_lib.cube.stack import SceneStack
from ocog_lib.data.sentinel2 import SceneQuery, stac_api
from ocog_lib.errors import InputError
from tests.support.stac_world import (
    SIZE,
    SceneSpec,
    band_pixels,
    scl_pixels,
    start_world,
    stop_world,
)

TILE = "36MZD"
SPECS = [
    SceneSpec(TILE, "2024-10-20", 12.0, offset=(64, 0), scl=True),
    SceneSpec(TILE, "2024-10-05", 3.0, offset=(0, 0), scl=True),
    SceneSpec(TILE, "2024-11-09", 85.0, offset=(128, 64), scl=True),  # over the cloud limit
    SceneSpec(TILE, "2024-12-30", 1.0, offset=(32, 32), scl=True),  # after the period
    SceneSpec("37MBV", "2024-10-10", 1.0, scl=True),  # another tile
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = start_world(tmp_path_factory.mktemp("stac"), SPECS)
    yield w
    stop_world(w)


@pytest.fixture(scope="module")
def built(world, tmp_path_factory):
    query = SceneQuery(tiles=(TILE,), start="2024-10-01", end="2024-11-30", max_cloud_cover=50)
    return build_stac_stack(stac_api(world.stac.url), query, tmp_path_factory.mktemp("stack"))


def test_the_tiles_dated_scenes_in_the_period_become_the_stack(built, world):
    stack = SceneStack.load(built.path)
    assert [s.id for s in stack.scenes] == [SPECS[1].item_id, SPECS[0].item_id]
    assert built.masked and stack.mask_kind == "scl" and stack.mask_asset == "SCL"
    first = stack.scenes[0]
    assert first.cloud_cover == 3.0
    assert stack.uri(first, "nir").startswith(world.files.url)
    assert stack.uri(first, "SCL").endswith("/SCL.tif")
    # the fixture item's raster:bands (a real Earth Search item): scale 1e-4, offset -0.1
    assert first.scaling == {b: (1e-4, -0.1) for b in ("B02", "B03", "B04", "B08")}
    assert json.loads(built.path.read_text())["scenes"][0]["assets"]["B04"].startswith("http")


def test_reads_over_http_apply_scaling_and_the_scl_mask(built):
    stack = SceneStack.load(built.path)
    info_bounds = _bounds(stack)
    cube = read_bbox(stack, info_bounds, crs=_crs(stack), resolution=10, expression="nir",
                     reducer="first")
    # the reference: the same pixels by numpy, first valid over time, NaN where masked
    layers = []
    for spec in (SPECS[1], SPECS[0]):
        nir = band_pixels(spec.offset)["nir"].astype(np.float32)
        value = np.where(nir == 0, np.nan, nir * np.float32(1e-4) + np.float32(-0.1))
        scl = np.repeat(np.repeat(scl_pixels(), 2, axis=0), 2, axis=1)
        value[np.isin(scl, (0, 1, 3, 8, 9, 10))] = np.nan
        layers.append(value.astype(np.float32))
    stackd = np.stack(layers)
    first = np.where(np.isnan(stackd[0]), stackd[1], stackd[0])
    assert cube.data.shape == (SIZE, SIZE)
    np.testing.assert_array_equal(cube.data, first)
    assert np.isnan(cube.data[30, 50])  # the cloud block masks both dates


def test_a_point_series_over_http_is_scaled_reflectance(built):
    stack = SceneStack.load(built.path)
    from rasterio.warp import transform

    left, _, _, top = _bounds(stack)
    x, y = left + 10 * 200 + 5, top - 10 * 300 - 5  # row 300, col 200: clear sky
    lon, lat = transform(_crs(stack), "EPSG:4326", [x], [y])
    got = read_point(stack, lon[0], lat[0], expression="red")
    want = [float(band_pixels(s.offset)["red"][300, 200] * np.float32(1e-4) + np.float32(-0.1))
            for s in (SPECS[1], SPECS[0])]
    assert [p.scene_id for p in got] == [SPECS[1].item_id, SPECS[0].item_id]
    assert [p.value for p in got] == pytest.approx(want, rel=1e-6)


def test_no_scene_in_the_period_names_the_tile_and_dates(world, tmp_path):
    query = SceneQuery(tiles=(TILE,), start="2023-01-01", end="2023-02-01")
    with pytest.raises(InputError, match=r"36MZD 2023-01-01/2023-02-01.*no usable scene"):
        build_stac_stack(stac_api(world.stac.url), query, tmp_path)
    assert not (tmp_path / "stack.json").exists()


def test_an_api_that_signs_hrefs_is_refused_before_any_search(tmp_path):
    with pytest.raises(InputError, match="signing"):
        build_stac_stack(stac_api("planetary-computer"), SceneQuery(tiles=(TILE,)), tmp_path)


def test_a_stack_needs_scenes():
    with pytest.raises(InputError, match="no scenes"):
        stack_document("empty", [])


def _crs(stack: SceneStack) -> str:
    from ocog_lib.cube.sources import raster_info

    return raster_info(stack.uri(stack.scenes[0], "B08")).crs


def _bounds(stack: SceneStack) -> tuple[float, float, float, float]:
    from ocog_lib.cube.sources import raster_info

    g = raster_info(stack.uri(stack.scenes[0], "B08")).geometry
    left, top = g.transform.c, g.transform.f
    return left, top - 10 * g.height, left + 10 * g.width, top
