"""Tile discovery: registers the sample's tiles as `sensor_tile` partitions, and turns each
Sentinel-2 discovery into raw_scenes runs for the tiles whose scene is new."""

import dagster as dg

from ocog_assets.defs.common.partitions import SENSOR_TILE, sensor_tiles
from ocog_assets.defs.data.jobs import raw_scenes_job


def missing_sample_tiles(instance: dg.DagsterInstance) -> list[str]:
    from ocog_lib.data.sample import sample_tiles

    known = set(instance.get_dynamic_partitions(SENSOR_TILE))
    return [t for t in sample_tiles() if t not in known]


def add_missing_sample_tiles(
        instance: dg.DagsterInstance) -> dg.AddDynamicPartitionsRequest | None:
    """The request that registers the sample tiles not yet registered (None: all are)."""
    new = missing_sample_tiles(instance)
    return sensor_tiles.build_add_request(new) if new else None


@dg.sensor(
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Registers the embedded sample's sensor tiles, so raw_scenes can be "
                "materialized from a fresh instance.",
)
def sample_tiles_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    add = add_missing_sample_tiles(context.instance)
    if add is None:
        return dg.SkipReason("every sample tile is registered")
    return dg.SensorResult(dynamic_partitions_requests=[add])


def scene_run_requests(metadata: dict) -> list[dg.RunRequest]:
    """One raw_scenes run per tile whose chosen scene is new; the run key (tile and item id)
    makes a scene download once however often the sensor sees it."""
    entry = metadata.get("updated_scenes")
    updated = entry.value if entry is not None else {}
    return [dg.RunRequest(run_key=f"{tile}:{item_id}", partition_key=tile,
                          tags={"ocog/stac_item": item_id})
            for tile, item_id in sorted(updated.items())]


@dg.asset_sensor(
    asset_key=dg.AssetKey("sentinel2_scenes"),
    job=raw_scenes_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After each Sentinel-2 discovery, downloads the tiles whose scene is new "
                "(one raw_scenes run per tile). It acts only on discoveries, which run when "
                "asked or when the (stopped by default) schedule is switched on.",
)
def sentinel2_new_scenes_sensor(context: dg.SensorEvaluationContext,
                                asset_event: dg.EventLogEntry):
    materialization = asset_event.asset_materialization
    requests = scene_run_requests(dict(materialization.metadata) if materialization else {})
    if not requests:
        return dg.SkipReason("the last discovery found no new scene")
    return requests
