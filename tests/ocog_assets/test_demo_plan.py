"""`ocog demo`'s plan and its run queue without the servers: the waves against the asset
graph, and the failure a run's event log yields (the demo itself: test_assets.py)."""

import dagster as dg

from ocog_assets.definitions import defs
from ocog_assets.defs.common.pools import BENCHMARK_POOL
from ocog_assets.defs.sample.plan import sample_plan, sample_waves
from ocog_assets.queued_runs import PlannedRun, RunQueue
from ocog_lib.data.sample import sample_tiles


def _assets(job_name: str) -> set[dg.AssetKey]:
    return set(defs.resolve_job_def(job_name).asset_layer.selected_asset_keys)


def test_each_wave_needs_only_the_waves_before_it():
    graph = defs.resolve_asset_graph()
    waves = sample_waves(sample_tiles())
    done: set[dg.AssetKey] = set()
    planned = {k for job, _ in sample_plan(sample_tiles()) for k in _assets(job)}
    for wave in waves:
        made = set().union(*(_assets(job) for job, _ in wave))
        for job, key in wave:
            upstream = {p for k in _assets(job) for p in graph.get(k).parent_keys} - _assets(job)
            assert upstream & planned <= done, (job, key, upstream & planned - done)
        done |= made
    assert done == planned and len(sample_plan(sample_tiles())) == sum(map(len, waves))


def test_measurements_share_a_wave_with_nothing_else_and_precede_training():
    def pools(job: str) -> set[str | None]:
        return {defs.resolve_assets_def(k).op.pool for k in _assets(job)}

    waves = [[job for job, _ in wave] for wave in sample_waves(sample_tiles())]
    for jobs in waves:
        measured = [BENCHMARK_POOL in pools(j) for j in jobs]
        assert all(measured) or not any(measured), jobs
    where = {job: i for i, jobs in enumerate(waves) for job in jobs}
    # local-optimal trains with the search's winner, read from best_configs
    assert where["search_results_job"] < where["trained_models_job"]


def test_partition_tags_are_the_ones_dagster_derives_for_the_key():
    """What a launch from the UI or a backfill tags a partition run with, for every run."""
    for job, key in sample_plan(sample_tiles()):
        partitions = defs.resolve_job_def(job).partitions_def
        expected = dict(partitions.get_tags_for_partition_key(str(key)))
        assert PlannedRun(job, key, {}).tags() == expected, (job, key)


def test_a_failed_run_is_named_by_its_root_cause(instance):
    """A variant before its dataset fails; the queue reports the error at the bottom of
    the chain (the user's next step), not Dagster's wrapper."""
    key = dg.MultiPartitionKey({"dataset": "sample", "variant": "default"})
    result = defs.resolve_job_def("cog_variants_job").execute_in_process(
        instance=instance, partition_key=str(key), raise_on_error=False)
    assert not result.success
    message = RunQueue(instance, "127.0.0.1", 0).first_error(result.run_id)
    assert "manifest.json" in message and "prepared_datasets" in message, message
    assert "DagsterExecutionStepExecutionError" not in message
