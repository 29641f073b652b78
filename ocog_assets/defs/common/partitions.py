"""How ocog's assets are sliced: sensor tiles (discovered), datasets and variants (fixed).

Shared by every domain; a partitions definition only one domain uses lives in its folder.
"""

from __future__ import annotations

import dagster as dg

SENSOR_TILE = "sensor_tile"
DATASETS = ("sample", "vaihingen", "potsdam", "dfc22")
VARIANTS = ("default", "optimal_local", "optimal_remote")

sensor_tiles = dg.DynamicPartitionsDefinition(name=SENSOR_TILE)
datasets = dg.StaticPartitionsDefinition(list(DATASETS))
variants = dg.StaticPartitionsDefinition(list(VARIANTS))
# Dagster allows two dimensions per multi-partition; keys read "dataset|variant".
dataset_variant = dg.MultiPartitionsDefinition({"dataset": datasets, "variant": variants})


def dataset_and_variant(context: dg.AssetExecutionContext) -> tuple[str, str]:
    keys = context.partition_key.keys_by_dimension
    return keys["dataset"], keys["variant"]
