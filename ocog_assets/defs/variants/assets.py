"""COG variants per dataset|variant, with their validity and losslessness as blocking checks."""

from collections.abc import Iterator

import dagster as dg

from ocog_assets.defs.data.assets import prepared_datasets
from ocog_assets.partitions import dataset_and_variant, dataset_variant
from ocog_assets.resources import OcogPaths
from ocog_lib.data.manifest import DatasetManifest

COG_VALID = "cog_valid"
LOSSLESS = "lossless"


@dg.asset(
    partitions_def=dataset_variant,
    # Dagster maps dataset|variant -> dataset itself (the upstream is the "dataset" dimension).
    deps=[prepared_datasets],
    check_specs=[
        dg.AssetCheckSpec(COG_VALID, asset="cog_variants", blocking=True,
                          description="Every file passes the COG validator (layout, overviews, "
                                      "tile order)."),
        dg.AssetCheckSpec(LOSSLESS, asset="cog_variants", blocking=True,
                          description="Every file decodes to the prepared pixels exactly."),
    ],
    group_name="variants",
    kinds={"geotiff"},
    description="Every image and mask of a prepared dataset written as COGs under one profile; "
                "the output is the per-file stat rows (see variant_stats).",
)
def cog_variants(context: dg.AssetExecutionContext, paths: OcogPaths) -> Iterator:
    from ocog_lib.cog import resolve_profile, write_variant

    dataset, variant = dataset_and_variant(context)
    settings = paths.settings()
    manifest = DatasetManifest.load(settings.prepared_dir(dataset))
    out_dir = settings.variant_dir(dataset, variant)
    _, rows = write_variant(manifest, resolve_profile(variant), out_dir, check=True)

    total = sum(r["bytes"] for r in rows)
    decoded = sum(r["decoded_bytes"] for r in rows)
    invalid = [r["item"] + "/" + r["kind"] for r in rows if not r["is_valid_cog"]]
    lossy = [r["item"] + "/" + r["kind"] for r in rows if not r["lossless_ok"]]
    yield dg.Output(rows, metadata={
        "path": dg.MetadataValue.path(str(out_dir)),
        "files": dg.MetadataValue.int(len(rows)),
        "total_bytes": dg.MetadataValue.int(total),
        "decoded_bytes": dg.MetadataValue.int(decoded),
        "compression_ratio": dg.MetadataValue.float(decoded / total if total else 0.0),
        "write_seconds": dg.MetadataValue.float(sum(r["write_seconds"] for r in rows)),
        "all_valid_cog": dg.MetadataValue.bool(not invalid),
        "all_lossless": dg.MetadataValue.bool(not lossy),
    })
    yield dg.AssetCheckResult(check_name=COG_VALID, passed=not invalid,
                              metadata={"invalid_files": dg.MetadataValue.json(invalid)})
    yield dg.AssetCheckResult(check_name=LOSSLESS, passed=not lossy,
                              metadata={"lossy_files": dg.MetadataValue.json(lossy)})
