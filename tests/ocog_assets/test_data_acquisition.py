"""The data domain in-process: Sentinel-2 discovery and raw_scenes through a real STAC API on
127.0.0.1, the discovery sensor and schedule, and the benchmark preparers from raw archives."""

import datetime

import dagster as dg
import numpy as np
import pytest
import rasterio

from ocog_assets.definitions import defs
from ocog_assets.defs.common.partitions import SENSOR_TILE
from ocog_assets.defs.common.resources import OcogPaths
from ocog_assets.defs.data.assets import (
    DiscoveryConfig,
    PrepareConfig,
    RawSceneConfig,
    prepared_datasets,
    raw_scenes,
    sentinel2_scenes,
)
from ocog_assets.defs.data.schedules import sentinel2_discovery_schedule
from ocog_assets.defs.data.sensors import sentinel2_new_scenes_sensor
from ocog_assets.defs.variants.assets import cog_variants
from ocog_lib.data.manifest import DatasetManifest
from ocog_lib.settings import Settings
from tests.support.archives import build_dfc22, build_potsdam, build_vaihingen
from tests.support.stac_world import SceneSpec, band_pixels, start_world, stop_world

ASSETS = [sentinel2_scenes, raw_scenes, prepared_datasets, cog_variants]
SPECS = [
    SceneSpec("36MZD", "2024-10-05", 12.0, (0, 0)),
    SceneSpec("36MZD", "2024-11-02", 3.0, (400, 400)),
    SceneSpec("36MZD", "2024-12-20", 15.0, (600, 200)),  # newest, cloudier
    SceneSpec("37MBV", "2024-12-01", 8.0, (0, 800)),
    SceneSpec("37MCU", "2024-10-11", 1.0, (100, 100), drop=("nir",)),
    SceneSpec("37MCU", "2024-10-21", 5.0, (900, 900)),
    SceneSpec("36MZE", "2024-10-11", 1.0, (200, 200), drop=("red",)),
]
TILES = ["36MZD", "37MBV", "37MCU", "36MZE"]


@pytest.fixture
def world(tmp_path):
    w = start_world(tmp_path / "stac", SPECS)
    yield w
    stop_world(w)


def _materialize(selection, instance, key=None, **config) -> dg.ExecuteInProcessResult:
    settings = Settings.from_env()
    run_config = dg.RunConfig(config) if config else None
    return dg.materialize(ASSETS, selection=selection, partition_key=key, instance=instance,
                          resources={"paths": OcogPaths(data_dir=str(settings.data_dir))},
                          run_config=run_config, raise_on_error=False)


def _meta(result, node):
    return result.asset_materializations_for_node(node)[0].metadata


def _discover(instance, url, **kw):
    config = DiscoveryConfig(api=url, tiles=TILES, start="2024-10-01", end="2024-12-31", **kw)
    result = _materialize([sentinel2_scenes], instance, sentinel2_scenes=config)
    assert result.success
    return _meta(result, "sentinel2_scenes")


def _sensor_requests(instance):
    """One tick of the sensor as the daemon runs it: the latest discovery's requests."""
    context = dg.build_sensor_context(instance=instance, definitions=defs)
    with dg.partition_loading_context(dynamic_partitions_store=instance):  # as the daemon does
        tick = sentinel2_new_scenes_sensor.evaluate_tick(context)
    return list(tick.run_requests or [])


def test_discovery_registers_tiles_and_raw_scenes_download_them(instance, world):
    meta = _discover(instance, world.stac.url)
    chosen = {"36MZD": "S2B_36MZD_20241102_0_L2A", "37MBV": "S2B_37MBV_20241201_0_L2A",
              "37MCU": "S2B_37MCU_20241021_0_L2A"}
    assert {r.data["tile"]: r.data["item_id"] for r in meta["scenes"].value.records} == chosen
    assert meta["updated_scenes"].value == chosen
    assert meta["registered_tiles"].value == sorted(chosen)
    assert meta["unmatched_tiles"].value == ["36MZE"]
    reasons = {r.data["item_id"]: r.data["reason"] for r in meta["skipped"].value.records}
    assert reasons == {
        "S2B_37MCU_20241011_0_L2A": "no asset for band nir (nir/B08); it has "
                                    "['blue', 'green', 'red']",
        "S2B_36MZE_20241011_0_L2A": "no asset for band red (red/B04); it has "
                                    "['blue', 'green', 'nir']",
    }
    assert sorted(instance.get_dynamic_partitions(SENSOR_TILE)) == sorted(chosen)

    requests = _sensor_requests(instance)
    assert [(r.partition_key, r.run_key) for r in requests] == [
        (t, f"{t}:{i}") for t, i in sorted(chosen.items())]

    settings = Settings.from_env()
    for request in requests:
        tile = request.partition_key
        result = _materialize([raw_scenes], instance, tile)
        assert result.success
        meta = _meta(result, "raw_scenes")
        assert meta["item_id"].value == chosen[tile] and not meta["reused"].value
        assert meta["bytes_fetched"].value > 0 and meta["bands"].value == 4
        expected = band_pixels(world.spec(chosen[tile]).offset)
        with rasterio.open(settings.raw_dir("tiles") / f"{tile}.tif") as ds:
            for i, band in enumerate(("blue", "green", "red", "nir"), start=1):
                np.testing.assert_array_equal(ds.read(i), expected[band])
            assert ds.tags()["OCOG_STAC_ITEM"] == chosen[tile]
    assert instance.get_materialized_partitions(dg.AssetKey("raw_scenes")) == set(chosen)

    # the same discovery again: nothing new, no runs; the raw scene is kept as it is
    meta = _discover(instance, world.stac.url)
    assert meta["updated_scenes"].value == {} and meta["registered_tiles"].value == []
    assert _sensor_requests(instance) == []
    result = _materialize([raw_scenes], instance, "36MZD")
    assert _meta(result, "raw_scenes")["reused"].value is True
    assert _meta(result, "raw_scenes")["bytes_fetched"].value == 0

    # following the newest scenes changes 36MZD's (the other tiles have one usable scene)
    meta = _discover(instance, world.stac.url, prefer="newest")
    assert meta["updated_scenes"].value == {"36MZD": "S2B_36MZD_20241220_0_L2A"}
    (request,) = _sensor_requests(instance)
    assert request.run_key == "36MZD:S2B_36MZD_20241220_0_L2A"
    result = _materialize([raw_scenes], instance, "36MZD")
    assert _meta(result, "raw_scenes")["item_id"].value == "S2B_36MZD_20241220_0_L2A"
    assert not _meta(result, "raw_scenes")["reused"].value


def test_schedule_reruns_the_last_query_and_is_off_by_default(instance, world):
    monday = datetime.datetime(2025, 1, 6, 4, tzinfo=datetime.UTC)
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=monday)
    first = sentinel2_discovery_schedule(context)
    assert first.run_config == {}  # nothing discovered yet: the asset's defaults
    _discover(instance, world.stac.url, max_cloud_cover=9.0)
    again = sentinel2_discovery_schedule(context)
    query = again.run_config["ops"]["sentinel2_scenes"]["config"]
    assert query["api"] == world.stac.url and query["max_cloud_cover"] == 9.0
    assert query["tiles"] == TILES and again.run_key == "discovery-2025-01-06"
    assert sentinel2_discovery_schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    # the run it asks for is valid for the job it targets
    result = defs.resolve_job_def("sentinel2_discovery_job").execute_in_process(
        instance=instance, run_config=again.run_config,
        resources={"paths": OcogPaths(data_dir=str(Settings.from_env().data_dir))})
    assert result.success


def test_raw_scene_of_an_undiscovered_tile_says_what_to_do(instance, world):
    instance.add_dynamic_partitions(SENSOR_TILE, ["33UUP", "18SVG"])
    result = _materialize([raw_scenes], instance, "33UUP")
    (failure,) = result.get_step_failure_events()
    message = failure.step_failure_data.error.to_string()
    assert "no Sentinel-2 scene chosen" in message and "sentinel2_scenes" in message
    # a sample tile forced to STAC needs a discovered scene too
    result = _materialize([raw_scenes], instance, "18SVG",
                          raw_scenes=RawSceneConfig(source="stac"))
    assert not result.success


@pytest.mark.parametrize("dataset,build", [("vaihingen", build_vaihingen),
                                           ("potsdam", build_potsdam),
                                           ("dfc22", build_dfc22)])
def test_prepared_datasets_prepare_raw_benchmarks(instance, dataset, build):
    settings = Settings.from_env()
    expected = build(settings.raw_dir(dataset))
    config = PrepareConfig(crs="EPSG:32633") if dataset == "potsdam" else PrepareConfig()
    result = _materialize([prepared_datasets], instance, dataset, prepared_datasets=config)
    assert result.success
    meta = _meta(result, "prepared_datasets")
    manifest = DatasetManifest.load(settings.prepared_dir(dataset))
    assert [i.name for i in manifest.items] == sorted(expected.images)
    assert meta["scenes"].value == len(expected.images)
    assert meta["unlabeled"].value == expected.unlabeled
    assert {r.data["name"] for r in meta["skipped"].value.records} == set(expected.skipped)

    key = dg.MultiPartitionKey({"dataset": dataset, "variant": "default"})
    result = _materialize([cog_variants], instance, key)
    assert result.success and all(c.passed for c in result.get_asset_check_evaluations())
    assert _meta(result, "cog_variants")["files"].value == 2 * len(expected.images)
