"""HDF5 training packages per dataset, checked pixel for pixel against their COG windows."""

import dagster as dg
from pydantic import Field

from ocog_assets.defs.common import owners
from ocog_assets.defs.common.checks import partition_check
from ocog_assets.defs.common.metadata import data_path, nbytes, number
from ocog_assets.defs.common.partitions import datasets
from ocog_assets.defs.common.resources import OcogPaths
from ocog_assets.defs.data.assets import prepared_datasets
from ocog_assets.defs.variants.assets import cog_variants

MATCHES_COGS = "matches_cogs"


class Hdf5PackageConfig(dg.Config):
    """What goes into the package; the defaults are `ocog export hdf5`'s."""

    variant: str = Field("", description="read this written COG variant; '' = the prepared files "
                                         "(the default variant holds the same pixels)")
    roles: list[str] = Field(["scene"], description="manifest roles to export")
    patch_size: int = 256
    sampler: str = Field("grid", description="grid (full coverage), random or block")
    samples: int = Field(0, description="0 = grid: all windows, random/block: 1024")
    seed: int = 0
    compression: str = Field("gzip", description="gzip, lzf or none")
    split_block: int = Field(0, description="px edge of the spatial split blocks; 0 = 4 x patch")
    force: bool = Field(False, description="rewrite even when the package is up to date")
    check_samples: int = Field(16, description="samples re-read from the COGs by the check")


@dg.asset(
    partitions_def=datasets,
    deps=[
        prepared_datasets,
        # lineage: a package may be cut from any variant of its dataset (config.variant);
        # Dagster maps dataset -> every dataset|variant by the shared dimension
        cog_variants,
    ],
    check_specs=[
        partition_check(
            MATCHES_COGS,
            "hdf5_packages",
            datasets,
            blocking=True,
            description="A seeded random subset of samples, re-read from the source COGs with "
            "GDAL, equals the package pixel for pixel (image and label).",
        )
    ],
    group_name="packaging",
    owners=owners.DATA,
    kinds={"hdf5", "json"},
    description="COG windows of one dataset (the engine's sampler and reader) as one HDF5 file "
    "in the MMEarth layout, with band_stats, spatially blocked splits and tile_info beside it "
    "(docs/hdf5.md).",
)
def hdf5_packages(
    context: dg.AssetExecutionContext, config: Hdf5PackageConfig, paths: OcogPaths
) -> dg.MaterializeResult:
    from ocog_lib.hdf5.export import ExportConfig, export_dataset
    from ocog_lib.hdf5.validate import compare_with_sources

    dataset = context.partition_key
    export = ExportConfig(
        patch_size=config.patch_size,
        sampler=config.sampler,
        samples=config.samples,
        seed=config.seed,
        compression=config.compression,
        split_block=config.split_block,
    )
    result = export_dataset(
        paths.settings(),
        dataset,
        None,
        export,
        variant=config.variant,
        roles=tuple(config.roles),
        force=config.force,
        progress=context.log.info,
    )
    check = compare_with_sources(result.path, samples=config.check_samples, seed=config.seed)
    return dg.MaterializeResult(
        metadata={
            **data_path(result.path),
            **nbytes("bytes", result.bytes),
            **nbytes("h5_bytes", result.h5_bytes),
            "samples": dg.MetadataValue.int(result.samples),
            "dropped_by_split_guard": dg.MetadataValue.int(result.dropped),
            "ratio_to_cog_bytes": number(result.ratio_to_cog_bytes, "ratio"),
            "compression_ratio": number(result.compression_ratio, "ratio"),
            "compression": dg.MetadataValue.text(result.compression),
            "splits": dg.MetadataValue.json(result.splits),
            "modalities": dg.MetadataValue.json(result.modalities),
            "skipped": dg.MetadataValue.bool(result.skipped),
            "seconds": number(result.seconds, "s"),
            "fingerprint": dg.MetadataValue.text(result.fingerprint),
            "content_hash": dg.MetadataValue.text(result.content_hash or ""),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=MATCHES_COGS,
                passed=check.passed,
                metadata={
                    "checked": dg.MetadataValue.int(len(check.checked)),
                    "mismatches": dg.MetadataValue.json(check.mismatches),
                },
            )
        ],
    )
