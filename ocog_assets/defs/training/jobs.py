from __future__ import annotations

import dagster as dg

from ocog_assets.defs.training.partitions import dataset_loader

trained_models_job = dg.define_asset_job(
    "trained_models_job", selection=dg.AssetSelection.assets("trained_models"),
    partitions_def=dataset_loader, description="Train one dataset under one loader config.",
)
