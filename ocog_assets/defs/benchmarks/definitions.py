import dagster as dg

from ocog_assets.defs.benchmarks.assets import stream_benchmarks
from ocog_assets.defs.benchmarks.jobs import stream_benchmarks_job
from ocog_assets.defs.benchmarks.schedules import nightly_stream_benchmarks

defs = dg.Definitions(
    assets=[stream_benchmarks], jobs=[stream_benchmarks_job], schedules=[nightly_stream_benchmarks]
)
