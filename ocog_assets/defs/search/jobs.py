from __future__ import annotations

import dagster as dg

from ocog_assets.defs.search.partitions import dataset_storage

search_results_job = dg.define_asset_job(
    "search_results_job", selection=dg.AssetSelection.assets("search_results"),
    partitions_def=dataset_storage, description="A TPE search for one dataset|storage.",
)
grid_results_job = dg.define_asset_job(
    "grid_results_job", selection=dg.AssetSelection.assets("grid_results"),
    partitions_def=dataset_storage, description="A two-variable grid for one dataset|storage.",
)
