"""Asset checks that belong to one partition: the check's result is recorded against the
partition the run materialized, so the UI shows a check per partition, not one for the
whole asset that each run overwrites."""

from __future__ import annotations

import warnings

import dagster as dg


def partition_check(name: str, asset: str, partitions_def: dg.PartitionsDefinition,
                    **kwargs) -> dg.AssetCheckSpec:
    """An AssetCheckSpec partitioned like its asset (Dagster 1.13 marks `partitions_def`
    on a check spec a preview; the warning is muted here, once, for every domain)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.AssetCheckSpec(name, asset=asset, partitions_def=partitions_def, **kwargs)
