"""Daily re-runs of each area's latest composite (off until switched on in the UI): on a
live stack the latest period is the one whose scenes can still arrive."""

import dagster as dg

from ocog_assets.defs.cubes.jobs import virtual_cubes_job
from ocog_assets.defs.cubes.partitions import AREAS, latest_period


@dg.schedule(
    cron_schedule="0 4 * * *",
    job=virtual_cubes_job,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Every day at 04:00: each area's latest period with scenes, one run each.",
)
def latest_virtual_cubes(context: dg.ScheduleEvaluationContext):
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")
    for area in AREAS:
        key = dg.MultiPartitionKey({"area": area, "period": latest_period(area)})
        yield dg.RunRequest(run_key=f"{day}-{area}", partition_key=key)
