import dagster as dg

from ocog_assets.defs.benchmarks.assets import stream_benchmarks
from ocog_assets.defs.benchmarks.schedules import nightly_stream_benchmarks, stream_benchmarks_job

defs = dg.Definitions(
    assets=[stream_benchmarks], jobs=[stream_benchmarks_job], schedules=[nightly_stream_benchmarks]
)
