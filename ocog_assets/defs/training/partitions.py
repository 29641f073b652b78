"""Training is sliced by dataset and by the loader config it streams under.

Which upstream partition a loader config reads comes from the library's profiles (one
source of truth): `local-*` streams the profile's variant from `cog_variants`, `remote-*`
from `remote_variants`, and `*-optimal` takes the winner of the search on its storage, so
the UI's lineage and a backfill's order follow what training reads.
"""

from __future__ import annotations

import warnings

import dagster as dg

from ocog_assets.defs.common.partitions import datasets
from ocog_lib.train.configs import LOADER_CONFIGS, PROFILES

LOADER_CONFIG = "loader_config"

dataset_loader = dg.MultiPartitionsDefinition(
    {"dataset": datasets, LOADER_CONFIG: dg.StaticPartitionsDefinition(list(LOADER_CONFIGS))}
)


def _loader_configs_by(dimension: str, keys: dict[str, str]) -> dg.MultiPartitionMapping:
    """Same dataset; `dimension`'s upstream key -> the loader configs that read it
    (Dagster 1.13 marks MultiPartitionMapping beta; the warning is muted here)."""
    by_key: dict[str, list[str]] = {}
    for name, upstream in keys.items():
        by_key.setdefault(upstream, []).append(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.MultiPartitionMapping({
            "dataset": dg.DimensionPartitionMapping("dataset", dg.IdentityPartitionMapping()),
            dimension: dg.DimensionPartitionMapping(
                LOADER_CONFIG, dg.StaticPartitionMapping(by_key)),
        })


def variants_read(storage: str) -> dg.MultiPartitionMapping:
    """cog_variants (storage "local") or remote_variants ("remote") -> trained_models."""
    return _loader_configs_by("variant", {
        p.name: p.variant for p in PROFILES.values() if p.storage == storage})


def search_read() -> dg.MultiPartitionMapping:
    """search_results[dataset|storage] -> the `*-optimal` trained_models on that storage."""
    return _loader_configs_by("storage", {
        p.name: p.storage for p in PROFILES.values() if p.name.endswith("-optimal")})
