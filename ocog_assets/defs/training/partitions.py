"""Training is sliced by dataset and by the loader config it streams under."""

from __future__ import annotations

import dagster as dg

from ocog_assets.defs.common.partitions import datasets
from ocog_lib.train.configs import LOADER_CONFIGS

dataset_loader = dg.MultiPartitionsDefinition(
    {"dataset": datasets, "loader_config": dg.StaticPartitionsDefinition(list(LOADER_CONFIGS))}
)
