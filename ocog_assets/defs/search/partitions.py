"""Searches are sliced by dataset and by where the files live (local disk or S3)."""

from __future__ import annotations

import dagster as dg

from ocog_assets.defs.common.partitions import datasets
from ocog_lib.search.space import STORAGES

storages = dg.StaticPartitionsDefinition(list(STORAGES))
# keys read "dataset|storage"
dataset_storage = dg.MultiPartitionsDefinition({"dataset": datasets, "storage": storages})


def dataset_and_storage(context: dg.AssetExecutionContext) -> tuple[str, str]:
    keys = context.partition_key.keys_by_dimension
    return keys["dataset"], keys["storage"]
