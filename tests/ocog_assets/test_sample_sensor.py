"""The sensor `sample_graph`, the UI's sample preset, evaluated on a real instance: what it
backfills on a fresh one, after a partial one, and when its own backfill is in flight.
(A backfill it launched, run by the daemon of `dagster dev`: test_dagster_dev.py.)"""

import time

import dagster as dg
from dagster._core.execution.backfill import PartitionBackfill

from ocog_assets.definitions import defs
from ocog_assets.defs.common.partitions import SENSOR_TILE
from ocog_assets.defs.sample.plan import sample_plan
from ocog_assets.defs.sample.sensors import PRESET, PRESET_TAG, sample_graph
from ocog_lib.data.sample import sample_tiles


def _tick(instance: dg.DagsterInstance):
    """One evaluation as the daemon makes it (evaluate_tick also validates the requests
    against the sensor's asset selection, which calling the function skips)."""
    context = dg.build_sensor_context(instance=instance, definitions=defs)
    return sample_graph.evaluate_tick(context)


def _plan_partitions() -> set[tuple[str, str]]:
    """The demo's plan read through each job's selected assets (not the sensor's code)."""
    return {(asset.to_user_string(), str(key)) for job, key in sample_plan(sample_tiles())
            for asset in defs.resolve_job_def(job).asset_layer.selected_asset_keys}


def _requested(result) -> set[tuple[str, str]]:
    (request,) = result.run_requests
    assert request.tags[PRESET_TAG] == PRESET
    subset = request.asset_graph_subset
    return {(ap.asset_key.to_user_string(), ap.partition_key)
            for ap in subset.iterate_asset_partitions()}


def _report(instance: dg.DagsterInstance, partitions: set[tuple[str, str]]) -> None:
    for asset, key in partitions:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=asset, partition=key))


def test_a_fresh_instance_gets_its_tiles_then_one_backfill_of_exactly_the_plan(instance):
    first = _tick(instance)
    assert not first.run_requests
    (add,) = first.dynamic_partitions_requests
    assert sorted(add.partition_keys) == sorted(sample_tiles())
    instance.add_dynamic_partitions(SENSOR_TILE, list(add.partition_keys))

    requested = _requested(_tick(instance))
    assert requested == _plan_partitions()
    assert not any(key.startswith(("vaihingen", "potsdam", "dfc22")) or "|remote" in key
                   or "remote-" in key
                   for _, key in requested)


def test_a_missing_variant_brings_back_only_what_reads_it(instance):
    instance.add_dynamic_partitions(SENSOR_TILE, sample_tiles())
    plan = _plan_partitions()
    gone = ("cog_variants", "sample|default")
    _report(instance, plan - {gone})
    requested = _requested(_tick(instance))
    assert requested == {
        gone, ("variant_stats", "sample|default"), ("stream_benchmarks", "sample|default"),
        ("trained_models", "sample|local-default"), ("hdf5_packages", "sample"),
        # the encoder and the codec read every variant of their dataset
        ("embedding_models", "sample"), ("patch_embeddings", "sample"),
        ("embedding_index", "sample"), ("retrieval_quality", "sample"),
        ("compression_models", "sample"), ("compressed_archive", "sample"),
        ("hash_retrieval_quality", "sample")}
    _report(instance, {gone})
    done = _tick(instance)
    assert not done.run_requests and "is materialized" in done.skip_message


def test_its_own_backfill_in_flight_is_waited_for(instance):
    instance.add_dynamic_partitions(SENSOR_TILE, sample_tiles())
    (request,) = _tick(instance).run_requests
    instance.add_backfill(PartitionBackfill.from_asset_graph_subset(
        backfill_id="ocogsample", backfill_timestamp=time.time(), tags=request.tags,
        dynamic_partitions_store=instance, asset_graph_subset=request.asset_graph_subset,
        title=None, description=None, run_config=None))
    waiting = _tick(instance)
    assert not waiting.run_requests and "ocogsample" in waiting.skip_message
