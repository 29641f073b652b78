"""Headers once per file version, windows through the engine, remote files by byte ranges."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ocog_lib.cube.reads import read_tile
from ocog_lib.cube.sources import raster_info
from ocog_lib.cube.stack import SceneStack, from_document
from ocog_lib.errors import InputError
from tests.ocog_lib.cube.conftest import DATES, LAT, LON, bands_of, lonlat, write_cog
from tests.support.rangeserver import RangeServer


def test_info_is_parsed_once_per_file_version(tmp_path):
    path = write_cog(tmp_path / "a.tif", bands_of(0)[:1])
    info = raster_info(str(path))
    assert info.fallback is None and info.crs == "EPSG:32618" and info.nodata == 0
    assert info.geometry.overviews == ((256, 256), (128, 128))
    assert raster_info(str(path)) is info
    write_cog(path, bands_of(1)[:1], blocksize=256)  # rewritten in place: read again
    again = raster_info(str(path))
    assert again is not info and again.geometry.overviews == ((256, 256),)


def _tile_of(stack: SceneStack, z: int, lon: float = LON, lat: float = LAT):
    import morecantile

    t = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, z)
    return read_tile(stack, z, t.x, t.y, expression="nir - red", reducer="mean")


def test_remote_stack_equals_local_and_a_dead_upstream_is_named(cube_files, monkeypatch):
    monkeypatch.setenv("OCOG_REMOTE_ATTEMPTS", "1")
    local = SceneStack.load(cube_files.folder)
    files = {}
    for path in [*cube_files.red, *cube_files.nir, *cube_files.scl]:
        files[f"/{path.parent.name}/{path.name}"] = path.read_bytes()
    with RangeServer(files) as server:
        doc = json.loads((cube_files.folder / "stack.json").read_text())
        for scene in doc["scenes"]:
            scene["assets"] = {k: f"{server.url}/{v}" for k, v in scene["assets"].items()}
        remote = from_document(doc, root=str(cube_files.folder), where="remote stack")
        for z in (12, 15):
            got, want = _tile_of(remote, z), _tile_of(local, z)
            np.testing.assert_array_equal(got.data, want.data)
            assert got.bytes_fetched > 0 and got.scenes == want.scenes
        server.files.clear()  # the upstream loses every object
        with pytest.raises(InputError) as err:
            _tile_of(remote, 16, *lonlat(480, 30))  # tiles not fetched yet
    assert err.value.what.startswith(server.url) and "404" in err.value.cause


def test_dates_reach_the_tile(cube_files):
    stack = SceneStack.load(cube_files.folder)
    both = _tile_of(stack, 15)
    assert both.scenes == ("s0", "s1", "s2")
    one = read_tile(stack, 15, *_xy(15), expression="nir - red", reducer="mean", end=DATES[0])
    assert one.scenes == ("s0",) and not np.array_equal(one.data, both.data, equal_nan=True)
    cloudy = read_tile(stack, 15, *_xy(15), expression="nir", max_cloud=30)
    assert cloudy.scenes == ("s0", "s2")  # s1 is 60 % cloudy


def _xy(z: int) -> tuple[int, int]:
    import morecantile

    t = morecantile.tms.get("WebMercatorQuad").tile(LON, LAT, z)
    return t.x, t.y
