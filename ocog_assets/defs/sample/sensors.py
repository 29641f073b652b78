"""`sample_graph`: the UI's preset for the embedded sample, one asset backfill of exactly the
sample's partitions (the demo's plan), where "Materialize all" would offer every dataset,
the S3 partitions and every loader config.

Switched on (Automation, off by default), it launches a backfill of the sample partitions
never materialized, and of every sample partition downstream of them, whenever no backfill
of its own is still in flight; once the graph is complete it skips. The backfill orders
the runs by the asset graph's partition mappings and runs every asset with its defaults
(full benchmark and training budgets, unlike the demo's short ones).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable, Sequence

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.definitions.events import AssetKeyPartitionKey
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus

from ocog_assets.defs.data.sensors import add_missing_sample_tiles
from ocog_assets.defs.sample.plan import PLAN_JOBS, sample_plan

PRESET_TAG = "ocog/preset"
PRESET = "sample"
_IN_FLIGHT = [BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING, BulkActionStatus.FAILING]
AssetPartition = AssetKeyPartitionKey


def sample_partitions(graph, tiles: list[str]) -> list[AssetPartition]:
    """Every (asset, partition) the sample plan materializes, parents before children."""
    order = {key: i for i, key in enumerate(graph.toposorted_asset_keys)}
    assets = {name: job.selection.resolve(graph) for name, job in PLAN_JOBS.items()}
    wanted = [AssetPartition(asset, str(key)) for job, key in sample_plan(tiles)
              for asset in assets[job]]
    return sorted(wanted, key=lambda ap: order[ap.asset_key])


def parents_of(graph, ap: AssetPartition,
               among: set[dg.AssetKey]) -> Iterable[AssetPartition]:
    """The partitions of `ap`'s parents in `among` that it reads (the partition mappings)."""
    for parent in graph.get(ap.asset_key).parent_keys & among:
        found = graph.get_parent_partition_keys_for_child(ap.partition_key, parent, ap.asset_key)
        for key in found.partitions_subset.get_partition_keys():
            yield AssetPartition(parent, key)


def to_backfill(graph, wanted: Sequence[AssetPartition],
                materialized: set[AssetPartition]) -> list[AssetPartition]:
    """The wanted partitions never materialized, and every wanted one downstream of them
    (`wanted` in topological order): rebuilding a parent leaves no child stale."""
    chosen: set[AssetPartition] = set()
    among = {ap.asset_key for ap in wanted}
    for ap in wanted:
        if ap not in materialized or any(p in chosen for p in parents_of(graph, ap, among)):
            chosen.add(ap)
    return [ap for ap in wanted if ap in chosen]


def materialized_of(instance: dg.DagsterInstance,
                    wanted: Sequence[AssetPartition]) -> set[AssetPartition]:
    done: set[AssetPartition] = set()
    for asset in {ap.asset_key for ap in wanted}:
        keys = instance.get_materialized_partitions(asset)
        done |= {ap for ap in wanted if ap.asset_key == asset and ap.partition_key in keys}
    return done


def _in_flight(instance: dg.DagsterInstance) -> list[str]:
    found = instance.get_backfills(filters=BulkActionsFilter(
        statuses=_IN_FLIGHT, tags={PRESET_TAG: PRESET}))
    return [b.backfill_id for b in found]


@dg.sensor(
    # a sensor that launches backfills names the assets they may cover
    asset_selection=functools.reduce(operator.or_, (j.selection for j in PLAN_JOBS.values())),
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="The sample preset: switched on, launches one asset backfill of exactly the "
                "embedded sample's partitions (the `ocog demo` plan) that were never "
                "materialized, and what depends on them; skips while its backfill runs or "
                "when the sample graph is complete.",
)
def sample_graph(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    instance = context.instance
    add = add_missing_sample_tiles(instance)
    if add is not None:  # the backfill's raw_scenes partitions must exist first
        return dg.SensorResult(
            dynamic_partitions_requests=[add],
            skip_reason=f"registered the sample tiles {list(add.partition_keys)}; the "
                        "backfill launches on the next tick")
    running = _in_flight(instance)
    if running:
        return dg.SkipReason(f"the sample backfill {running[0]} is still in flight")
    with partition_loading_context(dynamic_partitions_store=instance):  # the tiles
        return _backfill_missing(context)


def _backfill_missing(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    from ocog_lib.data.sample import sample_tiles

    graph = context.repository_def.asset_graph
    wanted = sample_partitions(graph, sample_tiles())
    todo = to_backfill(graph, wanted, materialized_of(context.instance, wanted))
    if not todo:
        return dg.SkipReason(f"the sample graph is materialized ({len(wanted)} partitions)")
    subset = AssetGraphSubset.from_asset_partition_set(set(todo), graph)
    context.log.info(f"backfilling {len(todo)} of the sample's {len(wanted)} partitions")
    return dg.SensorResult(run_requests=[
        dg.RunRequest.for_asset_graph_subset(subset, tags={PRESET_TAG: PRESET})])
