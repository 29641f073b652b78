"""Retrieval without decoding, as assets: per dataset, the learned codec and its hash head,
the compressed archive (every patch's bitstream and hash code in DuckDB), and the hash
codes' retrieval quality. Each runs one step of `ocog_lib.compress.pipeline` (what `ocog
compress` runs in one go); the steps after training take the model of the latest
`compression_models` materialization of their partition.
"""

import dataclasses
import typing

import dagster as dg
from pydantic import Field

from ocog_assets.defs.common import owners
from ocog_assets.defs.common.checks import partition_check
from ocog_assets.defs.common.metadata import (
    column_schema,
    data_path,
    number,
    table_definition,
    table_written,
)
from ocog_assets.defs.common.partitions import datasets
from ocog_assets.defs.common.pools import DUCKDB_WRITER_POOL, GPU_POOL
from ocog_assets.defs.common.resources import OcogPaths
from ocog_assets.defs.embeddings.assets import markdown_table, quality_result
from ocog_assets.defs.training.assets import K8S_GPU_TAGS
from ocog_assets.defs.variants.assets import cog_variants
from ocog_lib.compress.config import FIELD_HELP, CompressConfig
from ocog_lib.embed.pipeline import QUALITY_K

CODES_MATCH_STREAMS = "codes_match_bitstreams"
HASH_LEADS = "hash_beats_random_codes"
MODELS = dg.AssetKey("compression_models")


def _config_class() -> type[dg.Config]:
    """CompressConfig's fields (but the partition's dataset) as a Dagster config: one source
    of truth for every default, shown in the launchpad with its help."""
    hints = typing.get_type_hints(CompressConfig)
    fields = [f for f in dataclasses.fields(CompressConfig) if f.name != "dataset"]
    ns = {f.name: Field(f.default, description=FIELD_HELP[f.name]) for f in fields}
    ns["__annotations__"] = {f.name: hints[f.name] for f in fields}
    ns["__doc__"] = "The codec's training; the defaults are CompressConfig's (`ocog compress`)."
    return type("CompressionModelConfig", (dg.Config,), ns)


CompressionModelConfig = _config_class()


@dg.asset(
    partitions_def=datasets,
    deps=[cog_variants],  # the codec streams one variant of its dataset (config.variant)
    pool=GPU_POOL,
    op_tags=K8S_GPU_TAGS,
    group_name="compression",
    owners=owners.ML,
    kinds={"pytorch"},
    description="A learned codec (analysis/synthesis transforms, factorised entropy model) "
    "and a hash head on its quantised latents, trained in three stages (reconstruction, "
    "rate + distortion, hashing) on patches streamed from the dataset's COG variant; "
    "continued under the same config and data. The model file lives under data/models.",
)
def compression_models(context: dg.AssetExecutionContext, config: CompressionModelConfig,
                       paths: OcogPaths) -> dg.MaterializeResult:  # fmt: skip
    from ocog_lib.compress.train import STAGES, train_codec

    cfg = CompressConfig(dataset=context.partition_key, **config.model_dump())

    def progress(ev: dict) -> None:
        if ev["event"] == "checkpoint" and ev["loss"] is not None:
            stage = STAGES[ev["stage"]]
            context.log.info(f"step {ev['step']} ({stage}): loss {ev['loss']:.4f}")

    r = train_codec(cfg, paths.settings(), progress=progress)
    return dg.MaterializeResult(metadata={
        "model_id": r.model_id,
        "codec_id": r.codec_id,
        **data_path(r.model_path),
        "model_path": dg.MetadataValue.path(str(r.model_path)),
        "device": r.device,
        "steps": dg.MetadataValue.int(r.steps),
        "stage_steps": dg.MetadataValue.json(dict(zip(STAGES.values(), r.stage_steps,
                                                      strict=True))),
        "train_seconds": number(r.seconds, "s"),
        "trained": dg.MetadataValue.bool(r.trained),
        "resumed_from": dg.MetadataValue.int(r.resumed_from),
        "patches_per_s": number(r.patches_per_s, "patches/s"),
        "data_wait_fraction": number(r.data_wait, "fraction"),
        "val_patches": dg.MetadataValue.int(r.val_patches),
        "config": dg.MetadataValue.json(cfg.to_dict()),
    })  # fmt: skip


def trained_codec(context: dg.AssetExecutionContext, dataset: str) -> tuple[str, str]:
    """(model_id, model_path) of the latest compression_models[dataset] materialization."""
    found = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=MODELS, asset_partitions=[dataset]), limit=1).records
    if not found:
        raise dg.Failure(f"compression_models[{dataset}] has no materialization yet: "
                         "materialize it first")  # fmt: skip
    meta = found[0].asset_materialization.metadata
    return str(meta["model_id"].value), str(meta["model_path"].value)


class CompressedArchiveConfig(dg.Config):
    device: str = Field("cpu", description="cpu, cuda, cuda:0 ... (encoding)")
    batch_size: int = Field(256, description="patches per encoding batch")
    check_sample: int = Field(256, description="archived codes recomputed from their "
                              "bitstreams by the check (evenly spread)")  # fmt: skip


@dg.asset(
    partitions_def=datasets,
    deps=[compression_models],
    pool=DUCKDB_WRITER_POOL,
    check_specs=[
        partition_check(CODES_MATCH_STREAMS, "compressed_archive", datasets, blocking=True,
                        description="Stored hash codes equal the codes recomputed from the "
                        "stored bitstreams by entropy decoding (a sample of rows): what "
                        "search reads is what the archive holds."),
    ],
    group_name="compression",
    owners=owners.ML,
    metadata={**table_definition("compressed_patches"),
              "column_schema/compressed_archives": column_schema("compressed_archives")},
    kinds={"pytorch", "duckdb"},
    description="Every grid patch of the dataset as a real bitstream and a K-bit hash code "
    "(DuckDB table compressed_patches, one set per (dataset, codec_id); a rebuild replaces "
    "it) and a summary row in compressed_archives: bits per pixel, PSNR/SSIM of the decoded "
    "patches, bytes against the same patches as ZSTD and LERC_ZSTD COG tiles and as JPEG "
    "2000 at the same rate, with the rate-distortion plot.",
)
def compressed_archive(context: dg.AssetExecutionContext, config: CompressedArchiveConfig,
                       paths: OcogPaths) -> dg.MaterializeResult:  # fmt: skip
    from ocog_lib.compress.archive import (
        ARCHIVE_TABLE,
        build_archive,
        check_codes,
        rate_distortion_png,
    )
    from ocog_lib.data.lineage import model_hash
    from ocog_lib.search.plots import png_markdown

    settings = paths.settings()
    model_id, model_path = trained_codec(context, context.partition_key)
    a = build_archive(model_path, settings, batch_size=config.batch_size, device=config.device)
    bad = check_codes(model_path, settings.results_db, a.dataset, a.codec_id,
                      sample=config.check_sample)  # fmt: skip
    check = dg.AssetCheckResult(check_name=CODES_MATCH_STREAMS, passed=not bad, metadata={
        "mismatched_rows": dg.MetadataValue.json(list(bad[:10])),
        "checked": dg.MetadataValue.int(min(config.check_sample, a.patches))})  # fmt: skip
    return dg.MaterializeResult(metadata={
        "model_id": model_id,
        "codec_id": a.codec_id,
        "content_hash": model_hash(model_path) or "",
        "patches": dg.MetadataValue.int(a.patches),
        "code_bits": dg.MetadataValue.int(a.code_bits),
        "bits_per_pixel": number(a.bpp, "bpp"),
        "psnr_db": number(a.psnr_db, "dB"),
        "ssim": number(a.ssim, "score"),
        "bytes": dg.MetadataValue.md(_bytes_table(a)),
        "rate_distortion": dg.MetadataValue.md(png_markdown(
            rate_distortion_png(a, settings.results_db), "bpp vs PSNR")),
        "seconds": number(a.seconds, "s"),
        **table_written(ARCHIVE_TABLE, settings.results_db, row_count=a.patches),
        "column_schema/compressed_archives": column_schema("compressed_archives"),
    }, check_results=[check])  # fmt: skip


def _bytes_table(a) -> str:
    """The same patches in each form: bytes, bits per pixel, share of the raw size."""
    pixels = a.raw_bytes / a.bytes_per_sample / a.bands
    forms = [("raw", a.raw_bytes), ("ZSTD tiles (lossless)", a.zstd_bytes),
             ("LERC_ZSTD tiles (lossless)", a.lerc_zstd_bytes)]  # fmt: skip
    if a.lossy is not None:
        forms.append((f"{a.lossy.codec} at the codec's rate", round(a.lossy.bpp * pixels / 8)))
    forms.append(("learned codec (bitstreams)", a.bitstream_bytes))
    rows = [[name, int(n), round(8 * n / pixels, 3), round(n / a.raw_bytes, 4)]
            for name, n in forms if n is not None]  # fmt: skip
    table = markdown_table(["form", "bytes", "bits_per_pixel", "of_raw"], rows)
    ssim = "n/a" if a.ssim is None else f"{a.ssim:.4f}"
    note = f"\n\nlearned codec: PSNR {a.psnr_db:.2f} dB, SSIM {ssim} at {a.bpp:.3f} bpp"
    if a.lossy is not None:
        note += (f"; {a.lossy.codec}: PSNR {a.lossy.psnr_db:.2f} dB, SSIM {a.lossy.ssim:.4f} "
                 f"at {a.lossy.bpp:.3f} bpp")
    return table + note + f" (PSNR/SSIM on {a.stats_patches} patches, peak {a.peak:g} DN)"


class HashRetrievalQualityConfig(dg.Config):
    k: int = Field(QUALITY_K, description="neighbours scored per held-out query")
    device: str = Field("cpu", description="cpu, cuda, cuda:0 ...")


@dg.asset(
    partitions_def=datasets,
    deps=[compressed_archive],
    pool=DUCKDB_WRITER_POOL,
    check_specs=[
        partition_check(HASH_LEADS, "hash_retrieval_quality", datasets,
                        description="The hash codes' mAP@k is above random codes' of as "
                        "many bits (a warning: a short budget may not get there)."),
    ],
    group_name="compression",
    owners=owners.ML,
    metadata=table_definition("retrieval_quality"),
    kinds={"duckdb"},
    description="precision@k and mAP@k of the codec's hash codes (computed from bitstreams, "
    "searched by Hamming distance) and of random codes on held-out patches, as rows of the "
    "DuckDB table retrieval_quality beside the float encoder's (a new measurement of the "
    "same model and k replaces the old).",
)
def hash_retrieval_quality(context: dg.AssetExecutionContext,
                           config: HashRetrievalQualityConfig,
                           paths: OcogPaths) -> dg.MaterializeResult:  # fmt: skip
    from ocog_lib.compress.pipeline import record_hash_quality

    settings = paths.settings()
    model_id, model_path = trained_codec(context, context.partition_key)
    q = record_hash_quality(model_path, settings, k=config.k, device=config.device)
    return quality_result(q, settings, model_id, HASH_LEADS, q.hash_leads, "hash")
