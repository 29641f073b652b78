"""Nightly re-runs of the sample's benchmarks (off until switched on in the UI)."""

import dagster as dg

from ocog_assets.partitions import VARIANTS, dataset_variant

stream_benchmarks_job = dg.define_asset_job(
    "stream_benchmarks_job",
    selection=dg.AssetSelection.assets("stream_benchmarks"),
    partitions_def=dataset_variant,
    description="Benchmark one dataset|variant against the yardsticks.",
)


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
