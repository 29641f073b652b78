"""Sentinel-2 discovery and acquisition through a real STAC API and Range server on 127.0.0.1."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from ocog_lib.data.mgrs import latitude_band, mgrs_tile, square_letters
from ocog_lib.data.sample import prepare_sample
from ocog_lib.data.sentinel2 import (
    OCOG_TOOLKIT_TILES,
    PlanetaryComputerSigner,
    Scene,
    SceneQuery,
    acquire_scene,
    band_assets,
    discover_scenes,
    load_catalog,
    merge_catalog,
    normalize_tile,
    ocog_toolkit_query,
    stac_api,
    tile_centre,
    tile_of_item,
    tile_square,
)
from ocog_lib.errors import InputError
from tests.support.faults import FaultFront
from ocog_lib.storage import RemoteOptions
from tests.support.stac_world import (
    SIG,
    SceneSpec,
    TokenEndpoint,
    band_pixels,
    fixture_item,
    start_world,
    stop_world,
)

PERIOD = dict(start="2024-10-01", end="2024-12-31")
SPECS = [
    SceneSpec("36MZD", "2024-10-05", 12.0, (0, 0)),
    SceneSpec("36MZD", "2024-11-02", 3.0, (400, 400)),  # least cloudy: chosen
    SceneSpec("36MZD", "2025-01-15", 0.0, (0, 400)),  # outside the period
    SceneSpec("37MBV", "2024-10-20", 50.0, (800, 0)),  # over the cloud limit
    SceneSpec("37MBV", "2024-12-01", 8.0, (0, 800)),
    SceneSpec("37MCU", "2024-10-11", 1.0, (100, 100), drop=("nir",)),  # best, but no nir
    SceneSpec("37MCU", "2024-10-21", 5.0, (900, 900)),
    SceneSpec("36MZE", "2024-10-11", 1.0, (200, 200), drop=("red",)),  # nothing usable
]
FAST = RemoteOptions(attempts=4, backoff_s=0.01, backoff_max_s=0.05, deadline_s=20.0)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = start_world(tmp_path_factory.mktemp("stac"), SPECS)
    yield w
    stop_world(w)


def test_tile_ids_and_squares():
    assert [normalize_tile(t) for t in ("T36MZD", "MGRS-36MZD", "36mzd", "6MZD")] == [
        "36MZD", "36MZD", "36MZD", "06MZD"]
    for bad in ("36MZ", "61MZD", "36IZD", "36MZW", ""):
        with pytest.raises(InputError, match="not an MGRS tile"):
            normalize_tile(bad)
    # the square's centre, in the tile's own zone, carries the tile's letters (zone-edge
    # squares such as 36MZD lie past their zone's 6 degrees, so lon/lat alone would not do)
    rng = np.random.default_rng(5)
    points = [(rng.uniform(-179, 179), rng.uniform(-79, 83)) for _ in range(40)]
    tiles = set(OCOG_TOOLKIT_TILES) | {"22MHD", "18SVG"} | {mgrs_tile(*p) for p in points}
    bands = "CDEFGHJKLMNPQRSTUVWX"
    for tile in tiles:
        epsg, corners = tile_square(tile, 50_000)
        (e, n), zone = corners[0], int(tile[:2])
        assert square_letters(zone, e, n) == tile[3:], tile
        lon, lat = tile_centre(tile)
        assert abs(bands.index(latitude_band(lat)) - bands.index(tile[2])) <= 1, tile
    # the real item's footprint holds the centre of its tile
    item = fixture_item()
    lon, lat = tile_centre(tile_of_item(item))
    west, south, east, north = item["bbox"]
    assert west < lon < east and south < lat < north


def test_items_name_their_tile_and_bands():
    item = fixture_item()
    assert tile_of_item(item) == "22MHD"
    assert [(b.band, b.key, b.scale, b.offset, b.nodata) for b in band_assets(item)] == [
        (b, b, 0.0001, -0.1, 0) for b in ("blue", "green", "red", "nir")]
    pc = {"id": "x", "properties": {"s2:mgrs_tile": "36MZD"},
          "assets": {k: {"href": f"https://a.blob.core.windows.net/c/{k}.tif"}
                     for k in ("B02", "B03", "B04", "B08")}}
    assert tile_of_item(pc) == "36MZD"
    assert [b.key for b in band_assets(pc)] == ["B02", "B03", "B04", "B08"]
    del pc["assets"]["B03"]
    with pytest.raises(InputError, match=r"no asset for band green \(green/B03\)"):
        band_assets(pc)
    assert ocog_toolkit_query().tiles == OCOG_TOOLKIT_TILES


def test_discovery_picks_the_best_usable_scene_per_tile(world):
    api = stac_api(world.stac.url)
    found = discover_scenes(api, SceneQuery(tiles=("T36MZD", "37MBV", "37MCU", "36MZE"),
                                            max_cloud_cover=20, **PERIOD))
    assert {t: s.id for t, s in found.scenes.items()} == {
        "36MZD": "S2B_36MZD_20241102_0_L2A",
        "37MBV": "S2B_37MBV_20241201_0_L2A",
        "37MCU": "S2B_37MCU_20241021_0_L2A",
    }
    assert found.unmatched_tiles == ["36MZE"]
    assert {(s.item_id, s.reason) for s in found.skipped} == {
        ("S2B_37MCU_20241011_0_L2A", "no asset for band nir (nir/B08); it has "
                                     "['blue', 'green', 'red']"),
        ("S2B_36MZE_20241011_0_L2A", "no asset for band red (red/B04); it has "
                                     "['blue', 'green', 'nir']"),
    }
    # rustac has no query extension: the footprint search also met neighbouring tiles
    assert not found.used_query_extension and found.items_seen > 6


def test_scene_ids_are_fetched_as_named(world):
    api = stac_api(world.stac.url)
    ids = ("S2B_36MZD_20241005_0_L2A", "S2B_36MZD_20250115_0_L2A", "S2B_37MBV_20241020_0_L2A",
           "S2B_99XXX_20240101_0_L2A")
    found = discover_scenes(api, SceneQuery(scene_ids=ids))
    # explicit ids ignore period and cloud limit; one scene per tile, the least cloudy
    assert {t: s.id for t, s in found.scenes.items()} == {
        "36MZD": "S2B_36MZD_20250115_0_L2A", "37MBV": "S2B_37MBV_20241020_0_L2A"}
    reasons = {s.item_id: s.reason for s in found.skipped}
    assert "not found" in reasons["S2B_99XXX_20240101_0_L2A"]
    assert "S2B_36MZD_20250115_0_L2A was chosen" in reasons["S2B_36MZD_20241005_0_L2A"]


def test_acquired_scene_stacks_the_served_bands(world, tmp_path):
    api = stac_api(world.stac.url)
    scene = discover_scenes(api, SceneQuery(tiles=("36MZD",), **PERIOD)).scenes["36MZD"]
    dst = tmp_path / "raw" / "36MZD.tif"
    res = acquire_scene(scene, dst, tmp_path / "work")
    assert not res.reused and len(res.downloads) == 4
    assert res.bytes_fetched == sum(len(world.files.files[f"/sentinel-cogs/36MZD/{scene.id}/"
                                                         f"{k}.tif"])
                                    for k in ("B02", "B03", "B04", "B08"))
    expected = band_pixels(world.spec(scene.id).offset)
    epsg, corners = tile_square("36MZD")
    with rasterio.open(dst) as ds:
        assert ds.count == 4 and ds.dtypes == ("uint16",) * 4
        assert ds.crs.to_epsg() == epsg
        assert ds.transform == rasterio.Affine(10, 0, corners[0][0], 0, -10, corners[2][1])
        assert ds.profile["tiled"] and ds.compression.name == "deflate"
        for i, band in enumerate(("blue", "green", "red", "nir"), start=1):
            np.testing.assert_array_equal(ds.read(i), expected[band])
        assert ds.nodata == 0 and ds.scales == (0.0001,) * 4 and ds.offsets == (-0.1,) * 4
        assert ds.descriptions == ("blue", "green", "red", "nir")
        tags = ds.tags()
    assert tags["OCOG_STAC_ITEM"] == scene.id and tags["OCOG_TILE_ID"] == "36MZD"
    assert (tags["OCOG_SENSOR"], tags["OCOG_REFLECTANCE_SCALE"]) == ("sentinel-2", "0.0001")
    assert tags["OCOG_REFLECTANCE_OFFSET"] == "-0.1" and tags["OCOG_NODATA"] == "0"
    assert not list((tmp_path / "work").rglob("*.tif"))  # band files go once stacked

    before = world.files.requests
    again = acquire_scene(scene, dst, tmp_path / "work")
    assert again.reused and world.files.requests == before

    # the raw scene has the sample's format: the sample's preparer takes it as it is
    manifest = prepare_sample({"36MZD": dst}, tmp_path / "prepared", bench_size=256,
                              n_bench=1, scene_size=256)
    assert [i.tile_id for i in manifest.items] == ["36MZD", "36MZD"]


def test_catalog_keeps_one_scene_per_tile(world, tmp_path):
    api = stac_api(world.stac.url)
    path = tmp_path / "catalog.json"
    first = discover_scenes(api, SceneQuery(tiles=("36MZD",), end="2024-10-31"))
    assert merge_catalog(path, first.scenes) == (["36MZD"], [])
    later = discover_scenes(api, SceneQuery(tiles=("36MZD", "37MBV"), **PERIOD))
    assert merge_catalog(path, later.scenes) == (["37MBV"], ["36MZD"])
    loaded = load_catalog(path)
    assert {t: s.id for t, s in loaded.items()} == {t: s.id for t, s in later.scenes.items()}
    assert loaded["36MZD"] == later.scenes["36MZD"]
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(InputError, match="not a scene catalog"):
        load_catalog(tmp_path / "bad.json")


def test_download_faults_are_retried_then_named(world, tmp_path):
    api = stac_api(world.stac.url)
    scene = discover_scenes(api, SceneQuery(tiles=("37MBV",), **PERIOD)).scenes["37MBV"]
    with FaultFront(world.files.url, [503, 500, 503]) as front:
        url = front.url
        moved = Scene(scene.tile, scene.api, _rehost(scene.item, world.files.url, front.url))
        res = acquire_scene(moved, tmp_path / "a.tif", tmp_path / "work", options=FAST)
        assert sum(d.retries for d in res.downloads) == 3 and front.faulted == 3
        front.inject([500] * 50)
        with pytest.raises(InputError) as err:
            acquire_scene(moved, tmp_path / "b.tif", tmp_path / "work", options=FAST)
    message = str(err.value)
    assert f"{url}/sentinel-cogs/37MBV/" in message and "HTTP 500" in message
    assert "attempt(s)" in message and not (tmp_path / "b.tif").exists()


def test_stac_api_faults_are_retried_then_named(world, tmp_path):
    with FaultFront(world.stac.url, [503, 502]) as front:
        url = front.url
        found = discover_scenes(stac_api(front.url), SceneQuery(tiles=("36MZD",), **PERIOD))
        assert found.scenes["36MZD"].id == "S2B_36MZD_20241102_0_L2A" and front.faulted == 2
        front.inject([503] * 50)
        with pytest.raises(InputError, match=f"STAC API {url}.*failed after 2 retries "
                                             r"\(HTTP 503"):
            discover_scenes(stac_api(front.url), SceneQuery(tiles=("36MZD",)), retries=2)
    with pytest.raises(InputError, match="opening the API failed"):  # nobody listens now
        discover_scenes(stac_api(url), SceneQuery(tiles=("36MZD",)), retries=0,
                        timeout_s=2)
    with pytest.raises(InputError, match="unknown; use earth-search, planetary-computer"):
        stac_api("earthsearch")


def test_planetary_computer_items_are_signed(tmp_path):
    specs = [SceneSpec("37MBU", "2024-11-11", 4.0, (300, 300), shape="planetary-computer")]
    world = start_world(tmp_path / "pc", specs, sig=SIG)
    try:
        with TokenEndpoint(f"st=2024&se=2999&sp=rl&sig={SIG}") as tokens:
            api = stac_api(world.stac.url, tile_property="s2:mgrs_tile", tile_prefix="",
                           signing="planetary-computer", token_url=tokens.url)
            scene = discover_scenes(api, SceneQuery(tiles=("37MBU",), **PERIOD)).scenes["37MBU"]
            assert [b.key for b in scene.bands] == ["B02", "B03", "B04", "B08"]
            unsigned = Scene(scene.tile, stac_api(world.stac.url), scene.item)
            with pytest.raises(InputError, match="HTTP 403: access denied") as err:
                acquire_scene(unsigned, tmp_path / "x.tif", tmp_path / "work", options=FAST)
            assert SIG not in str(err.value)
            res = acquire_scene(scene, tmp_path / "37MBU.tif", tmp_path / "work")
            assert tokens.requests == ["/api/sas/v1/token/sentinel-2-l2a"]  # one, cached
            signer = PlanetaryComputerSigner(tokens.url)
            assert signer.token("sentinel-2-l2a") == tokens.token
        expected = band_pixels(specs[0].offset)
        with rasterio.open(res.path) as ds:
            np.testing.assert_array_equal(ds.read(4), expected["nir"])
    finally:
        stop_world(world)


def _rehost(item: dict, old: str, new: str) -> dict:
    out = dict(item, assets={k: dict(a, href=a["href"].replace(old, new))
                             for k, a in item["assets"].items()})
    return out
