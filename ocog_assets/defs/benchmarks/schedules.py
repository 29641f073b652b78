"""Nightly re-runs of the sample's benchmarks (off until switched on in the UI)."""

import dagster as dg

from ocog_assets.defs.benchmarks.jobs import stream_benchmarks_job
from ocog_assets.defs.common.partitions import VARIANTS


@dg.schedule(
    cron_schedule="0 3 * * *",
    job=stream_benchmarks_job,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Every night at 03:00: the sample's variants, one run each; the "
    "asset check flags a drop of more than 20% against the last run.",
)
def nightly_stream_benchmarks(context: dg.ScheduleEvaluationContext):
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")
    for variant in VARIANTS:
        key = dg.MultiPartitionKey({"dataset": "sample", "variant": variant})
        yield dg.RunRequest(run_key=f"{day}-{variant}", partition_key=key)
