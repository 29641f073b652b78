"""Weekly Sentinel-2 discovery (off until switched on): the last query, run again."""

import dagster as dg

from ocog_assets.defs.data.jobs import sentinel2_discovery_job


def last_query(instance: dg.DagsterInstance) -> dict | None:
    """The config of the latest sentinel2_scenes materialization, or None."""
    event = instance.get_latest_materialization_event(dg.AssetKey("sentinel2_scenes"))
    materialization = event.asset_materialization if event else None
    entry = materialization.metadata.get("query") if materialization else None
    return dict(entry.value) if entry is not None else None


@dg.schedule(
    cron_schedule="0 4 * * 1",
    job=sentinel2_discovery_job,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Mondays 04:00: re-run the last Sentinel-2 discovery (the OCOG toolkit's "
                "tiles if there was none); new scenes go to raw_scenes through "
                "sentinel2_new_scenes_sensor. Give the query an open end date (end='') and "
                "prefer='newest' to follow new acquisitions.",
)
def sentinel2_discovery_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    query = last_query(context.instance)
    config = {"ops": {"sentinel2_scenes": {"config": query}}} if query else {}
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return dg.RunRequest(run_key=f"discovery-{day}", run_config=config)
