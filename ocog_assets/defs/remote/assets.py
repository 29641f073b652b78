"""COG variants in object storage: each dataset|variant folder uploaded to S3, once, under
the key layout every remote reader uses (ocog_lib.remote.session)."""

import time

import dagster as dg

from ocog_assets.defs.common import owners
from ocog_assets.defs.common.metadata import nbytes, number
from ocog_assets.defs.common.partitions import dataset_and_variant, dataset_variant
from ocog_assets.defs.common.resources import ObjectStore, OcogPaths
from ocog_assets.defs.variants.assets import cog_variants
from ocog_lib.errors import InputError

ENDPOINT_TAG = "ocog/endpoint"  # "embedded" or "configured", on each materialization


@dg.asset(
    partitions_def=dataset_variant,
    deps=[cog_variants],
    group_name="remote",
    owners=owners.PLATFORM,
    kinds={"s3"},
    description="A COG variant's folder uploaded to s3://<bucket>/variants/<dataset>/<variant>/ "
    "on the configured S3 endpoint, or on ocog's embedded one when none is configured. "
    "Large files go up as parallel multipart uploads; objects whose size and sha256 match "
    "are skipped, and manifest.json goes last. The embedded endpoint keeps objects in "
    "memory: after `ocog s3 stop` or a reboot, materialize again (only a hash per file "
    "when nothing changed, a loopback copy otherwise).",
)
def remote_variants(
    context: dg.AssetExecutionContext, paths: OcogPaths, object_store: ObjectStore
) -> dg.MaterializeResult:
    from ocog_lib.remote.upload import upload_dir

    dataset, variant = dataset_and_variant(context)
    folder = paths.settings().variant_dir(dataset, variant)
    if not folder.is_dir():
        raise InputError(
            folder, f"no variant folder: materialize cog_variants[{dataset}|{variant}] first"
        )
    prefix = object_store.uri_for(dataset, variant)  # ocog_lib.remote.session's layout
    endpoint = object_store.endpoint()
    start = time.monotonic()
    results = upload_dir(folder, prefix, client_opts=object_store.client_opts(endpoint))
    seconds = time.monotonic() - start
    uploaded = [r for r in results if r.uploaded]
    sent = sum(r.size for r in uploaded)
    context.log.info(
        f"{len(uploaded)} of {len(results)} files uploaded to {prefix} on "
        f"{endpoint.display_url} ({sent / 1e6:.1f} MB in {seconds:.1f} s)"
    )
    metadata = {
        # where the data lives: the variant's folder in the bucket
        "path": dg.MetadataValue.url(prefix),
        "endpoint": dg.MetadataValue.text(endpoint.display_url),
        "embedded": dg.MetadataValue.bool(endpoint.embedded),
        "bucket": dg.MetadataValue.text(endpoint.bucket),
        "prefix": dg.MetadataValue.text(prefix),
        "files": dg.MetadataValue.int(len(results)),
        "files_uploaded": dg.MetadataValue.int(len(uploaded)),
        "files_skipped": dg.MetadataValue.int(len(results) - len(uploaded)),
        **nbytes("bytes", sum(r.size for r in results)),
        **nbytes("bytes_uploaded", sent),
        "parts": dg.MetadataValue.int(sum(r.parts for r in results)),
        "seconds": number(seconds, "s"),
        "upload_mb_per_s": number(sent / seconds / 1e6 if seconds else 0.0, "MB/s"),
    }
    if endpoint.embedded:  # its objects are as old as its process
        metadata["embedded_pid"] = dg.MetadataValue.int(endpoint.pid or 0)
        metadata["embedded_started_at"] = dg.MetadataValue.timestamp(endpoint.started_at or 0.0)
    return dg.MaterializeResult(
        metadata=metadata,
        tags={ENDPOINT_TAG: "embedded" if endpoint.embedded else "configured"},
    )
