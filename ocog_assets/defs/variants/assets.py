"""COG variants per dataset|variant, with their validity and losslessness as blocking checks."""

from collections.abc import Iterator
from pathlib import Path

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
                          description="Every file passes the COG validator (tiling, IFD and "
                                      "overview order, header before data)."),
        dg.AssetCheckSpec(LOSSLESS, asset="cog_variants", blocking=True,
                          description="Every file of a lossless profile (masks always) decodes "
                                      "to the prepared pixels exactly."),
    ],
    group_name="variants",
    kinds={"geotiff"},
    description="Every image and mask of a prepared dataset written as COGs under one profile; "
                "the output is the per-file stat rows (see variant_stats).",
)
def cog_variants(context: dg.AssetExecutionContext, paths: OcogPaths) -> Iterator:
    from ocog_lib.cog.variants import resolve_profile, write_variant

    dataset, variant = dataset_and_variant(context)
    settings = paths.settings()
    manifest = DatasetManifest.load(settings.prepared_dir(dataset))
    profile = resolve_profile(variant)
    out_dir = settings.variant_dir(dataset, variant)
    # The checks run here, not inside write_variant (which raises on the first bad file),
    # so a failure shows as a failed check naming every file, and blocks variant_stats.
    _, rows = write_variant(manifest, profile, out_dir, check=False)
    invalid, lossy = check_files(manifest, profile, rows)

    total = sum(r["bytes"] for r in rows)
    decoded = sum(r["decoded_bytes"] for r in rows)
    yield dg.Output(rows, metadata={
        "path": dg.MetadataValue.path(str(out_dir)),
        "files": dg.MetadataValue.int(len(rows)),
        "total_bytes": dg.MetadataValue.int(total),
        "decoded_bytes": dg.MetadataValue.int(decoded),
        "compression_ratio": dg.MetadataValue.float(decoded / total if total else 0.0),
        "write_seconds": dg.MetadataValue.float(sum(r["write_seconds"] for r in rows)),
        "all_valid_cog": dg.MetadataValue.bool(not invalid),
        "lossless": dg.MetadataValue.bool(profile.lossless),
    })
    yield dg.AssetCheckResult(check_name=COG_VALID, passed=not invalid,
                              metadata={"invalid_files": dg.MetadataValue.json(invalid)})
    yield dg.AssetCheckResult(check_name=LOSSLESS, passed=not lossy,
                              metadata={"differing_files": dg.MetadataValue.json(lossy)})


def check_files(manifest: DatasetManifest, profile, rows: list[dict]
                ) -> tuple[dict[str, list[str]], list[str]]:
    """Fill each row's is_valid_cog / lossless_ok; return the invalid and the differing files."""
    from ocog_lib.cog.variants import check_lossless, mask_profile, validate_cog

    sources: dict[tuple[str, str], Path] = {}
    for item in manifest.items:
        sources[item.name, "image"] = manifest.image_path(item)
        if item.mask:
            sources[item.name, "mask"] = manifest.mask_path(item)
    lossless = {"image": profile.lossless, "mask": mask_profile(profile).lossless}
    invalid: dict[str, list[str]] = {}
    differing: list[str] = []
    for row in rows:
        validation = validate_cog(Path(row["path"]))
        row["is_valid_cog"] = validation.valid
        if not validation.valid:
            invalid[row["path"]] = validation.errors
        if lossless[row["kind"]]:
            row["lossless_ok"] = check_lossless(sources[row["item"], row["kind"]], row["path"])
            if not row["lossless_ok"]:
                differing.append(row["path"])
    return invalid, differing
