"""Tile discovery: registers sensor tiles as `sensor_tile` partitions (no runs requested)."""

import dagster as dg

from ocog_assets.partitions import SENSOR_TILE, sensor_tiles


def missing_sample_tiles(instance: dg.DagsterInstance) -> list[str]:
    from ocog_lib.data.sample import sample_tiles

    known = set(instance.get_dynamic_partitions(SENSOR_TILE))
    return [t for t in sample_tiles() if t not in known]


@dg.sensor(
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Registers the embedded sample's sensor tiles, so raw_scenes can be "
                "materialized from a fresh instance.",
)
def sample_tiles_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    new = missing_sample_tiles(context.instance)
    if not new:
        return dg.SkipReason("every sample tile is registered")
    return dg.SensorResult(dynamic_partitions_requests=[sensor_tiles.build_add_request(new)])
