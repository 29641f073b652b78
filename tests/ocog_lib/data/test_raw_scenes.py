"""Which source a tile's raw scene comes from, the tiles to acquire, and discovery into the
scene catalog (against a local STAC API and band server)."""

from __future__ import annotations

import pytest

from ocog_lib.data.raw_scenes import (
    RAW_SOURCES,
    catalog_tiles,
    discover_into_catalog,
    make_raw_scene,
    raw_scene_source,
)
from ocog_lib.data.sample import sample_tiles
from ocog_lib.data.sentinel2 import SceneQuery, catalog_path, load_catalog, stac_api
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings
from tests.support.stac_world import SceneSpec, start_world, stop_world


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data", results_db=tmp_path / "ocog.duckdb")


def test_auto_takes_the_sample_for_its_tiles_and_stac_for_the_rest():
    tile = sample_tiles()[0]
    assert raw_scene_source(tile) == "sample" and raw_scene_source("36MZD") == "stac"
    assert raw_scene_source(tile, "stac") == "stac"  # e.g. a real 18SVG scene
    assert RAW_SOURCES == ("auto", "sample", "stac")


def test_a_bad_source_or_a_tile_outside_the_sample_is_refused():
    with pytest.raises(InputError, match="valid: auto, sample, stac"):
        raw_scene_source("36MZD", "s3")
    with pytest.raises(InputError, match="not in the embedded sample .*use source 'stac'"):
        raw_scene_source("36MZD", "sample")


def test_a_stac_tile_without_a_catalog_scene_says_how_to_get_one(settings):
    with pytest.raises(InputError, match="ocog data s2 search --tiles 36MZD"):
        make_raw_scene(settings, "36MZD")
    assert not settings.raw_scene_path("36MZD").exists()


def test_tiles_to_acquire_are_normalized_or_the_whole_catalog(settings, tmp_path):
    with pytest.raises(InputError, match="no scenes yet: run `ocog data s2 search`"):
        catalog_tiles(settings)
    assert catalog_tiles(settings, ["T36MZD", "37mbv"]) == ["36MZD", "37MBV"]
    specs = [SceneSpec("37MBV", "2024-12-01", 8.0, (0, 800)),
             SceneSpec("36MZD", "2024-10-05", 12.0, (0, 0))]
    world = start_world(tmp_path / "stac", specs)
    try:
        query = SceneQuery(tiles=("36MZD", "37MBV"), start="2024-10-01", end="2024-12-31")
        update = discover_into_catalog(settings, stac_api(world.stac.url), query)
        again = discover_into_catalog(settings, stac_api(world.stac.url), query)
    finally:
        stop_world(world)
    assert update.catalog == catalog_path(settings)
    assert (update.new, update.changed) == (["36MZD", "37MBV"], [])
    assert update.updated == {s.tile: s.item_id for s in sorted(specs, key=lambda s: s.tile)}
    assert (again.new, again.changed, again.updated) == ([], [], {})  # nothing to download
    assert sorted(load_catalog(update.catalog)) == catalog_tiles(settings) == ["36MZD", "37MBV"]
