"""`ocog data ...` end to end: sources, Sentinel-2 search + acquire on local servers, prepare."""

import json

import numpy as np
import pytest
import rasterio

from ocog_lib.cli.main import main
from ocog_lib.data.manifest import DatasetManifest
from ocog_lib.settings import Settings
from tests.support.archives import build_dfc22
from tests.support.stac_world import SceneSpec, band_pixels, start_world, stop_world


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("OCOG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("OCOG_DUCKDB", raising=False)
    return tmp_path / "data"


def test_sources_say_where_and_how(data_dir, capsys):
    assert main(["data", "sources", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["datasets"]) == {"vaihingen", "potsdam", "dfc22"}
    for d in out["datasets"].values():
        assert d["url"].startswith("https://") and d["citation"] and d["terms"]
    assert out["stac_apis"]["earth-search"]["url"] == "https://earth-search.aws.element84.com/v1"
    assert main(["data", "sources"]) == 0
    text = capsys.readouterr().out
    assert str(data_dir / "raw" / "potsdam") in text and "redistributed" in text


def test_s2_search_then_acquire(data_dir, tmp_path, capsys):
    specs = [SceneSpec("36MZD", "2024-10-05", 12.0, (0, 0)),
             SceneSpec("37MBV", "2024-12-01", 8.0, (0, 800))]
    world = start_world(tmp_path / "stac", specs)
    try:
        assert main(["data", "s2", "search", "--api", world.stac.url, "--tiles", "T36MZD",
                     "37MBV", "--start", "2024-10-01", "--end", "2024-12-31", "--json"]) == 0
        found = json.loads(capsys.readouterr().out)
        assert {t: s["item_id"] for t, s in found["scenes"].items()} == {
            "36MZD": specs[0].item_id, "37MBV": specs[1].item_id}
        assert found["new_tiles"] == ["36MZD", "37MBV"]
        assert main(["data", "s2", "acquire", "--tiles", "37MBV"]) == 0
        assert "37MBV" in capsys.readouterr().out
    finally:
        stop_world(world)
    with rasterio.open(Settings.from_env().raw_dir("tiles") / "37MBV.tif") as ds:
        np.testing.assert_array_equal(ds.read(3), band_pixels(specs[1].offset)["red"])
    # a tile the catalog does not know: the error says how to get a scene for it
    assert main(["data", "s2", "acquire", "--tiles", "18SVG"]) == 1
    err = capsys.readouterr().err
    assert "no Sentinel-2 scene chosen" in err and "ocog data s2 search --tiles 18SVG" in err


def test_prepare_from_raw_archives(data_dir, capsys):
    expected = build_dfc22(data_dir / "raw" / "dfc22")
    assert main(["data", "prepare", "dfc22"]) == 0
    assert f"{len(expected.images)} scenes, 1 unlabeled" in capsys.readouterr().out
    manifest = DatasetManifest.load(data_dir / "prepared" / "dfc22")
    assert sorted(i.name for i in manifest.items) == sorted(expected.images)
    assert main(["data", "prepare", "vaihingen"]) == 1
    err = capsys.readouterr().err
    assert str(data_dir / "raw" / "vaihingen") in err and "isprs.org" in err


def test_s2_stack_writes_a_time_stack_that_serve_reads(data_dir, tmp_path, capsys):
    """Every scene of the tile in the period, oldest first; a tile of it over HTTP COGs."""
    import morecantile
    import requests

    from ocog_lib.cube.stack import SceneStack
    from ocog_lib.cube.zooms import finest_zoom
    from tests.support.serving import running_server

    specs = [SceneSpec("36MZD", "2024-11-02", 4.0, (0, 0)),
             SceneSpec("36MZD", "2024-10-05", 9.0, (64, 64)),
             SceneSpec("36MZD", "2024-10-20", 60.0, (32, 0))]  # over --max-cloud
    world = start_world(tmp_path / "stac", specs)
    try:
        out = tmp_path / "s2stack"
        assert main(["data", "s2", "stack", str(out), "--api", world.stac.url, "--tile",
                     "T36MZD", "--start", "2024-10-01", "--end", "2024-12-31",
                     "--max-cloud", "20"]) == 0
        printed = capsys.readouterr().out
        assert "2 scenes of T36MZD" in printed and "no mask" in printed
        stack = SceneStack.load(out)
        assert [s.id for s in stack.scenes] == [specs[1].item_id, specs[0].item_id]
        z = finest_zoom(stack, "WebMercatorQuad") - 1
        tile = morecantile.tms.get("WebMercatorQuad").tile(*_inside(stack), z)
        with running_server(tmp_path, stack=out / "stack.json") as server:
            r = requests.get(f"{server.url}/tiles/WebMercatorQuad/{z}/{tile.x}/{tile.y}.npy",
                             timeout=60)
        assert r.status_code == 200, r.text
        assert r.headers["X-Scenes"] == "2"
        assert int(r.headers["X-Bytes-Fetched"]) > 0
    finally:
        stop_world(world)


def _inside(stack) -> tuple[float, float]:
    """lon, lat of a pixel well inside the first scene."""
    from rasterio.warp import transform

    from ocog_lib.cube.sources import raster_info

    info = raster_info(stack.uri(stack.scenes[0], "B08"))
    g = info.geometry
    x, y = g.transform * (g.width / 2, g.height / 2)
    lon, lat = transform(info.crs, "EPSG:4326", [x], [y])
    return lon[0], lat[0]
