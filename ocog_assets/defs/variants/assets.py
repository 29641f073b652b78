"""COG variants per dataset|variant, with their validity and losslessness as blocking checks."""

from collections.abc import Iterator

import dagster as dg

from ocog_assets.defs.common import owners
from ocog_assets.defs.common.checks import partition_check
from ocog_assets.defs.common.metadata import data_path, nbytes, number
from ocog_assets.defs.common.partitions import dataset_and_variant, dataset_variant
from ocog_assets.defs.common.resources import OcogPaths
from ocog_assets.defs.data.assets import prepared_datasets
from ocog_lib.data.manifest import DatasetManifest

COG_VALID = "cog_valid"
LOSSLESS = "lossless"


@dg.asset(
    partitions_def=dataset_variant,
    # Dagster maps dataset|variant -> dataset itself (the upstream is the "dataset" dimension).
    deps=[prepared_datasets],
    check_specs=[
        partition_check(COG_VALID, "cog_variants", dataset_variant, blocking=True,
                        description="Every file passes the COG validator (tiling, IFD and "
                                    "overview order, header before data), and ocog's "
                                    "decoder reads every tile as GDAL does."),
        partition_check(LOSSLESS, "cog_variants", dataset_variant, blocking=True,
                        description="Every file of a lossless profile (masks always) decodes "
                                    "to the prepared pixels exactly."),
    ],
    group_name="variants",
    owners=owners.DATA,
    kinds={"geotiff"},
    description="Every image and mask of a prepared dataset written as COGs under one profile; "
                "the output is the per-file stat rows (see variant_stats).",
)
def cog_variants(context: dg.AssetExecutionContext, paths: OcogPaths) -> Iterator:
    from ocog_lib.cog.checks import check_variant_files
    from ocog_lib.cog.profiles import resolve_profile
    from ocog_lib.cog.write import write_variant

    dataset, variant = dataset_and_variant(context)
    settings = paths.settings()
    manifest = DatasetManifest.load(settings.prepared_dir(dataset))
    profile = resolve_profile(variant)
    out_dir = settings.variant_dir(dataset, variant)
    # The checks run here, not inside write_variant (which raises on the first bad file),
    # so a failure shows as a failed check naming every file, and blocks variant_stats.
    _, written = write_variant(manifest, profile, out_dir, check=False)
    checked = check_variant_files(manifest, profile, written)
    rows = checked.annotated(written)

    total = sum(r["bytes"] for r in rows)
    decoded = sum(r["decoded_bytes"] for r in rows)
    yield dg.Output(rows, metadata={
        **data_path(out_dir),
        "files": dg.MetadataValue.int(len(rows)),
        **nbytes("total_bytes", total),
        **nbytes("decoded_bytes", decoded),
        # exact: decoded_bytes / total_bytes (two ints) is what a reader recomputes
        "compression_ratio": dg.MetadataValue.float(decoded / total if total else 0.0),
        "write_seconds": number(sum(r["write_seconds"] for r in rows), "s"),
        "all_valid_cog": dg.MetadataValue.bool(not checked.invalid),
        "lossless": dg.MetadataValue.bool(profile.lossless),
        "content_hash": dg.MetadataValue.text(rows[0]["content_hash"] if rows else ""),
    })
    yield dg.AssetCheckResult(check_name=COG_VALID, passed=not checked.invalid,
                              metadata={"invalid_files": dg.MetadataValue.json(checked.invalid)})
    yield dg.AssetCheckResult(check_name=LOSSLESS, passed=not checked.differing,
                              metadata={"differing_files":
                                        dg.MetadataValue.json(checked.differing)})

