"""The data domain's jobs. A job covers one partitions definition and Dagster runs one
partition key per run, so the sample is a plan of runs (ocog_assets.demo), or backfills
from the UI."""

from __future__ import annotations

import dagster as dg

from ocog_assets.defs.common.partitions import datasets, sensor_tiles

raw_scenes_job = dg.define_asset_job(
    "raw_scenes_job", selection=dg.AssetSelection.assets("raw_scenes"),
    partitions_def=sensor_tiles, description="One raw scene per sensor tile.",
)
prepared_datasets_job = dg.define_asset_job(
    "prepared_datasets_job", selection=dg.AssetSelection.assets("prepared_datasets"),
    partitions_def=datasets, description="Prepare one dataset from its raw data.",
)
sentinel2_discovery_job = dg.define_asset_job(
    "sentinel2_discovery_job",
    selection=dg.AssetSelection.assets("sentinel2_scenes"),
    description="Search STAC for Sentinel-2 scenes per tile and update the scene catalog.",
)
