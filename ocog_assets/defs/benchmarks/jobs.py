from __future__ import annotations

import dagster as dg

from ocog_assets.defs.common.partitions import dataset_variant

stream_benchmarks_job = dg.define_asset_job(
    "stream_benchmarks_job",
    selection=dg.AssetSelection.assets("stream_benchmarks"),
    partitions_def=dataset_variant,
    description="Benchmark one dataset|variant against the yardsticks.",
)
