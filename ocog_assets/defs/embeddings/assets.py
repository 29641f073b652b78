"""Find places like this, as assets: per dataset, the trained patch encoder, every patch's
embedding in DuckDB (keyed by H3 cell), the HNSW index over them, and the encoder's retrieval
quality against two baselines. Each runs one step of `ocog_lib.embed.pipeline` (what `ocog
embed` runs in one go); the steps after training take the model of the latest
`embedding_models` materialization of their partition.
"""

import dataclasses
import inspect

import dagster as dg
from pydantic import Field

from ocog_assets.defs.common import owners
from ocog_assets.defs.common.checks import partition_check
from ocog_assets.defs.common.metadata import (
    data_path,
    nbytes,
    number,
    table_definition,
    table_written,
)
from ocog_assets.defs.common.partitions import datasets
from ocog_assets.defs.common.pools import DUCKDB_WRITER_POOL, GPU_POOL
from ocog_assets.defs.common.resources import OcogPaths
from ocog_assets.defs.common.worker_processes import clean_worker_start
from ocog_assets.defs.training.assets import K8S_GPU_TAGS
from ocog_assets.defs.variants.assets import cog_variants
from ocog_lib.embed.config import FIELD_HELP, defaults
from ocog_lib.embed.index import HnswConfig
from ocog_lib.embed.pipeline import QUALITY_K, embed_and_store

UNIT_NORM = "unit_norm"
VALID_H3_CELLS = "valid_h3_cells"
ENCODER_LEADS = "encoder_leads"
MODELS = dg.AssetKey("embedding_models")
_D = defaults()  # EmbedConfig's: the UI shows what `ocog embed` runs with
_H = {f.name: f.default for f in dataclasses.fields(HnswConfig)}
_EMBED = {k: p.default for k, p in inspect.signature(embed_and_store).parameters.items()}


def _f(name: str):
    return Field(_D[name], description=FIELD_HELP[name])


class EmbeddingModelConfig(dg.Config):
    """The encoder's training; the defaults are EmbedConfig's (`ocog embed --help`)."""

    variant: str = _f("variant")
    dim: int = _f("dim")
    patch_size: int = _f("patch_size")
    neighbour_px: int = _f("neighbour_px")
    distant_px: int = _f("distant_px")
    objective: str = _f("objective")
    budget_s: float = _f("budget_s")
    steps: int | None = _f("steps")
    batch_size: int = _f("batch_size")
    lr: float = _f("lr")
    width: int = _f("width")
    batches_per_epoch: int = _f("batches_per_epoch")
    norm_batches: int = _f("norm_batches")
    checkpoint_every: int = _f("checkpoint_every")
    val_fraction: float = _f("val_fraction")
    max_val_patches: int = _f("max_val_patches")
    seed: int = _f("seed")
    device: str = _f("device")
    workers: int = _f("workers")
    resume: bool = _f("resume")
    model_store: str | None = Field(None, description="folder or s3://bucket/prefix; default "
                                    "$OCOG_MODEL_STORE, else data/models")  # fmt: skip


@dg.asset(
    partitions_def=datasets,
    # lineage: the encoder streams one variant of its dataset (config.variant); Dagster maps
    # dataset -> every dataset|variant by the shared dimension
    deps=[cog_variants],
    pool=GPU_POOL,
    op_tags=K8S_GPU_TAGS,
    group_name="embeddings",
    owners=owners.ML,
    kinds={"pytorch"},
    description="A small ResNet patch encoder trained (or continued, under the same config "
    "and data) on neighbouring patches streamed from the dataset's COG variant; the model "
    "file lives in the model store under its id.",
)
def embedding_models(context: dg.AssetExecutionContext, config: EmbeddingModelConfig,
                     paths: OcogPaths) -> dg.MaterializeResult:  # fmt: skip
    from ocog_lib.embed.config import EmbedConfig
    from ocog_lib.embed.train import train_encoder
    from ocog_lib.train.store import model_store

    settings = paths.settings()
    fields = config.model_dump(exclude={"model_store"})
    cfg = EmbedConfig(dataset=context.partition_key, **fields)

    def progress(ev: dict) -> None:
        if ev["event"] == "checkpoint" and ev["loss"] is not None:
            context.log.info(f"step {ev['step']}: loss {ev['loss']:.4f}")

    with clean_worker_start():
        r = train_encoder(cfg, settings, store=model_store(config.model_store, settings),
                          progress=progress)  # fmt: skip
    return dg.MaterializeResult(metadata={
        "model_id": r.model_id,
        **data_path(r.model_path),
        "model_path": dg.MetadataValue.path(str(r.model_path)),
        "model_uri": r.model_uri,
        "device": r.device,
        "steps": dg.MetadataValue.int(r.steps),
        "train_seconds": number(r.seconds, "s"),
        "trained": dg.MetadataValue.bool(r.trained),
        "resumed_from": dg.MetadataValue.int(r.resumed_from),
        "loss": number(r.loss, "loss"),
        "triplets_per_s": number(r.triplets_per_s, "triplets/s"),
        "data_wait_fraction": number(r.data_wait, "fraction"),
        "val_patches": dg.MetadataValue.int(r.val_patches),
        "config": dg.MetadataValue.json(r.config),
    })  # fmt: skip


def trained_model(context: dg.AssetExecutionContext, dataset: str) -> tuple[str, str]:
    """(model_id, model_path) of the latest embedding_models[dataset] materialization."""
    found = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=MODELS, asset_partitions=[dataset]), limit=1).records
    if not found:
        raise dg.Failure(f"embedding_models[{dataset}] has no materialization yet: "
                         "materialize it first")  # fmt: skip
    meta = found[0].asset_materialization.metadata
    return str(meta["model_id"].value), str(meta["model_path"].value)


class PatchEmbeddingsConfig(dg.Config):
    device: str = Field(_EMBED["device"], description="auto (cuda when present), cpu, cuda:0")
    h3_resolution: int | None = Field(None, description="H3 resolution of the cells; None: "
                                      "the model's, else from the pixel size")  # fmt: skip
    batch_size: int = Field(_EMBED["batch_size"], description="patches per inference batch")


@dg.asset(
    partitions_def=datasets,
    deps=[embedding_models],
    pool=DUCKDB_WRITER_POOL,
    check_specs=[
        partition_check(UNIT_NORM, "patch_embeddings", datasets, blocking=True,
                        description="Every stored vector has unit length (|norm - 1| <= "
                        "1e-3): cosine similarity is then a dot product."),
        partition_check(VALID_H3_CELLS, "patch_embeddings", datasets, blocking=True,
                        description="Every stored cell is a valid H3 cell index."),
    ],
    group_name="embeddings",
    owners=owners.ML,
    metadata=table_definition("patch_embeddings"),
    kinds={"pytorch", "duckdb"},
    description="Every grid patch of the dataset embedded by its encoder: unit vectors with "
    "their H3 cell, lon/lat, time, source window and label, one set per (dataset, model_id) "
    "in the DuckDB table patch_embeddings (a new run replaces the set's rows).",
)
def patch_embeddings(context: dg.AssetExecutionContext, config: PatchEmbeddingsConfig,
                     paths: OcogPaths) -> dg.MaterializeResult:  # fmt: skip
    from ocog_lib.embed.h3cells import valid_cells
    from ocog_lib.embed.similar import dataset_classes
    from ocog_lib.embed.store import load_embeddings
    from ocog_lib.search.plots import png_markdown

    dataset, settings = context.partition_key, paths.settings()
    model_id, model_path = trained_model(context, dataset)
    with clean_worker_start():
        out = embed_and_store(model_path, settings, device=config.device,
                              h3_resolution=config.h3_resolution, batch_size=config.batch_size)
    _, stored = load_embeddings(settings.results_db, dataset, model_id)  # what search reads
    not_unit, bad_cells = stored.not_unit(), ~valid_cells(stored.cells)
    png = _scatter(stored, dataset_classes(settings.data_dir, dataset), dataset, model_id)
    checks = [
        dg.AssetCheckResult(check_name=UNIT_NORM, passed=not len(not_unit), metadata={
            "not_unit": dg.MetadataValue.int(len(not_unit)),
            "first_rows": dg.MetadataValue.json(not_unit[:10].tolist())}),
        dg.AssetCheckResult(check_name=VALID_H3_CELLS, passed=not bad_cells.any(), metadata={
            "invalid": dg.MetadataValue.int(int(bad_cells.sum()))}),
    ]  # fmt: skip
    return dg.MaterializeResult(metadata={
        "model_id": model_id,
        "count": dg.MetadataValue.int(out.rows),
        "dimension": dg.MetadataValue.int(out.dim),
        "h3_resolution": dg.MetadataValue.int(out.h3_resolution),
        "labelled": dg.MetadataValue.int(out.labelled),
        "seconds": number(out.seconds, "s"),
        "patches_per_s": number(out.patches_per_s, "patches/s"),
        "fingerprint": out.fingerprint,
        "pca_scatter": dg.MetadataValue.md(png_markdown(png, "PCA of the embeddings")),
        **table_written("patch_embeddings", settings.results_db, row_count=out.rows),
    }, check_results=checks)  # fmt: skip


def _scatter(es, classes: dict, dataset: str, model_id: str) -> bytes:
    from ocog_lib.embed.scatter import scatter_png

    title = f"{dataset} / {model_id}: {len(es)} patches, {es.dim}-d, PCA"
    return scatter_png(es, classes, title=title)


class EmbeddingIndexConfig(dg.Config):
    """HNSW settings for a build (an index already fresh is kept as it is)."""

    connectivity: int = Field(_H["connectivity"], description="HNSW links per node (M)")
    expansion_add: int = Field(_H["expansion_add"], description="expansion while building "
                               "(ef_construction)")  # fmt: skip
    expansion_search: int = Field(_H["expansion_search"], description="expansion at query "
                                  "time (ef)")  # fmt: skip
    dtype: str = Field(_H["dtype"], description="stored scalar: f32, f16 or i8")
    threads: int = Field(_H["threads"], description="build threads; 0: the usable cores")


@dg.asset(
    partitions_def=datasets,
    deps=[patch_embeddings],
    group_name="embeddings",
    owners=owners.ML,
    kinds={"numpy"},
    description="The usearch HNSW index over the dataset's stored embeddings, beside the "
    "results file (<db>.index/<dataset>/<model_id>/): loaded when fresh, extended when rows "
    "were appended, rebuilt otherwise; `ocog similar` searches it.",
)
def embedding_index(context: dg.AssetExecutionContext, config: EmbeddingIndexConfig,
                    paths: OcogPaths) -> dg.MaterializeResult:  # fmt: skip
    from ocog_lib.embed.index import HnswConfig
    from ocog_lib.embed.pipeline import refresh_index

    dataset = context.partition_key
    model_id, _ = trained_model(context, dataset)
    ix = refresh_index(paths.settings(), dataset, model_id,
                       config=HnswConfig(**config.model_dump()))  # fmt: skip
    context.log.info(f"{dataset}/{model_id}: index {ix.action}, {ix.rows} rows")
    return dg.MaterializeResult(metadata={
        "model_id": model_id,
        "rows": dg.MetadataValue.int(ix.rows),
        **nbytes("bytes", ix.bytes),
        "build_seconds": number(ix.seconds, "s"),
        "action": ix.action,
        "path": dg.MetadataValue.path(str(ix.path)),
    })  # fmt: skip


class RetrievalQualityConfig(dg.Config):
    k: int = Field(QUALITY_K, description="neighbours scored per held-out query")
    device: str = Field("auto", description="auto (cuda when present), cpu, cuda:0 ...")


@dg.asset(
    partitions_def=datasets,
    deps=[embedding_models],
    pool=DUCKDB_WRITER_POOL,
    check_specs=[
        partition_check(ENCODER_LEADS, "retrieval_quality", datasets,
                        description="The trained encoder's mAP@k is above both baselines' "
                        "(a warning: a short budget may not get there)."),
    ],
    group_name="embeddings",
    owners=owners.ML,
    metadata=table_definition("retrieval_quality"),
    kinds={"duckdb"},
    description="precision@k and mAP@k of the encoder and of two baselines (random "
    "projection, band statistics) on held-out patches: a query's neighbours should share "
    "its label. Rows in the DuckDB table retrieval_quality (a new measurement of the same "
    "model and k replaces the old).",
)
def retrieval_quality(context: dg.AssetExecutionContext, config: RetrievalQualityConfig,
                      paths: OcogPaths) -> dg.MaterializeResult:  # fmt: skip
    from ocog_lib.embed.pipeline import record_quality

    dataset, settings = context.partition_key, paths.settings()
    model_id, model_path = trained_model(context, dataset)
    q = record_quality(model_path, settings, k=config.k, device=config.device)
    return quality_result(q, settings, model_id, ENCODER_LEADS, q.encoder_leads, "encoder")


def quality_result(q, settings, model_id: str, check_name: str, passed: bool,
                   lead: str) -> dg.MaterializeResult:  # fmt: skip
    """A retrieval_quality measurement (embeddings' or hash codes') as the asset shows it:
    the rows as a table, the `lead` method's mAP@k, the warning check, the table's size."""
    from ocog_lib import results
    from ocog_lib.embed.pipeline import QUALITY_TABLE

    cols = ["method", "dim", "k", "precision_at_k", "map_at_k", "n_queries"]
    _, total = results.query(settings.results_db, f"SELECT count(*) FROM {QUALITY_TABLE}")
    maps = {r["method"]: r["map_at_k"] for r in q.rows}
    check = dg.AssetCheckResult(check_name=check_name, passed=passed,
                                severity=dg.AssetCheckSeverity.WARN,
                                metadata={"map_at_k": dg.MetadataValue.json(maps)})
    return dg.MaterializeResult(metadata={
        "run_id": q.run_id,
        "model_id": model_id,
        "content_hash": (q.rows[0].get("content_hash") if q.rows else None) or "",
        "k": dg.MetadataValue.int(q.k),
        "quality": dg.MetadataValue.md(markdown_table(cols, [[r[c] for c in cols]
                                                             for r in q.rows])),
        f"{lead}_map_at_k": number(maps.get(lead), "score"),
        **table_written(QUALITY_TABLE, settings.results_db, row_count=total[0][0]),
    }, check_results=[check])  # fmt: skip


def markdown_table(columns: list[str], rows: list[list]) -> str:
    def cell(v) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows])
