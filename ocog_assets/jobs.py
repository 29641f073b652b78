"""Jobs, one per partitions definition: Dagster runs one partition key per run, so the sample
is three jobs in sequence (ocog_assets.demo), or one backfill from the UI."""

from __future__ import annotations

import dagster as dg

from ocog_assets.defs.search.partitions import dataset_storage
from ocog_assets.defs.training.assets import dataset_loader
from ocog_assets.partitions import dataset_variant, datasets, sensor_tiles

raw_scenes_job = dg.define_asset_job(
    "raw_scenes_job", selection=dg.AssetSelection.assets("raw_scenes"),
    partitions_def=sensor_tiles, description="One raw scene per sensor tile.",
)
prepared_datasets_job = dg.define_asset_job(
    "prepared_datasets_job", selection=dg.AssetSelection.assets("prepared_datasets"),
    partitions_def=datasets, description="Prepare one dataset from its raw data.",
)
cog_variants_job = dg.define_asset_job(
    "cog_variants_job", selection=dg.AssetSelection.assets("cog_variants", "variant_stats"),
    partitions_def=dataset_variant,
    description="Write one COG variant of a dataset, check it, record its stats in DuckDB.",
)
search_results_job = dg.define_asset_job(
    "search_results_job", selection=dg.AssetSelection.assets("search_results"),
    partitions_def=dataset_storage, description="A TPE search for one dataset|storage.",
)
grid_results_job = dg.define_asset_job(
    "grid_results_job", selection=dg.AssetSelection.assets("grid_results"),
    partitions_def=dataset_storage, description="A two-variable grid for one dataset|storage.",
)
trained_models_job = dg.define_asset_job(
    "trained_models_job", selection=dg.AssetSelection.assets("trained_models"),
    partitions_def=dataset_loader, description="Train one dataset under one loader config.",
)
hdf5_packages_job = dg.define_asset_job(
    "hdf5_packages_job", selection=dg.AssetSelection.assets("hdf5_packages"),
    partitions_def=datasets, description="Package one dataset as HDF5 and check it.",
)
JOBS = (
    raw_scenes_job,
    prepared_datasets_job,
    cog_variants_job,
    search_results_job,
    grid_results_job,
    trained_models_job,
    hdf5_packages_job,
)
