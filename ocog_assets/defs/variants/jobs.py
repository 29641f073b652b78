from __future__ import annotations

import dagster as dg

from ocog_assets.defs.common.partitions import dataset_variant

# variant_stats (results) rides along: its rows are this run's output
cog_variants_job = dg.define_asset_job(
    "cog_variants_job", selection=dg.AssetSelection.assets("cog_variants", "variant_stats"),
    partitions_def=dataset_variant,
    description="Write one COG variant of a dataset, check it, record its stats in DuckDB.",
)
