"""trained_models[dataset|loader_config]: a U-Net trained on streamed COGs, scored in DuckDB."""


import dagster as dg

from ocog_assets.defs.common import owners
from ocog_assets.defs.common.metadata import (
    data_path,
    number,
    table_definition,
    table_written,
    trend,
)
from ocog_assets.defs.common.pools import GPU_POOL
from ocog_assets.defs.common.resources import OcogPaths
from ocog_assets.defs.common.worker_processes import clean_worker_start
from ocog_assets.defs.remote.assets import remote_variants
from ocog_assets.defs.search.assets import search_results
from ocog_assets.defs.training.partitions import dataset_loader, search_read, variants_read
from ocog_assets.defs.variants.assets import cog_variants

K8S_GPU_TAGS = {
    "dagster-k8s/config": {
        "container_config": {"resources": {"limits": {"nvidia.com/gpu": 1}}},
    }
}


class TrainingConfig(dg.Config):
    """Budget and model size; the defaults are `ocog train`'s."""

    max_time: float = 600.0
    iterations: int | None = None
    device: str = "auto"
    patch_size: int = 128
    batch_size: int = 16
    width: int = 16
    lr: float = 2e-3
    eval_every: int = 100
    seed: int = 0
    resume: bool = True
    nproc: int = 1  # training processes (DDP: gloo on CPU, one per GPU); batch stays global
    model_store: str | None = None  # folder or s3://bucket/prefix; default $OCOG_MODEL_STORE


@dg.asset(
    partitions_def=dataset_loader,
    deps=[dg.AssetDep(cog_variants, partition_mapping=variants_read("local")),
          dg.AssetDep(remote_variants, partition_mapping=variants_read("remote")),
          dg.AssetDep(search_results, partition_mapping=search_read())],
    pool=GPU_POOL,
    op_tags=K8S_GPU_TAGS,
    group_name="training",
    owners=owners.ML,
    metadata=table_definition("training_runs"),
    kinds={"pytorch", "duckdb"},
    description="A compact U-Net trained on one dataset streamed under one loader config; "
    "model file in the model store, one training_runs row per evaluation (see the "
    "model_comparison view).",
)
def trained_models(context: dg.AssetExecutionContext, config: TrainingConfig,
                   paths: OcogPaths) -> dg.MaterializeResult:
    from ocog_lib.search.plots import png_markdown
    from ocog_lib.train.configs import TrainConfig
    from ocog_lib.train.loop import train_and_record
    from ocog_lib.train.metrics import miou_curve_png
    from ocog_lib.train.store import model_store

    keys = context.partition_key.keys_by_dimension
    settings = paths.settings()
    cfg = TrainConfig(
        dataset=keys["dataset"], loader_config=keys["loader_config"],
        max_time=config.max_time, iterations=config.iterations, device=config.device,
        patch_size=config.patch_size, batch_size=config.batch_size, width=config.width,
        lr=config.lr, eval_every=config.eval_every, seed=config.seed, resume=config.resume,
        nproc=config.nproc,
    )

    def progress(ev: dict) -> None:
        if ev["event"] == "eval":
            context.log.info(f"step {ev['step']}: mIoU {ev['miou']:.3f}")

    with clean_worker_start():
        r = train_and_record(cfg, settings, store=model_store(config.model_store, settings),
                             progress=progress)
    png = miou_curve_png([x["step"] for x in r.rows], [x["miou"] for x in r.rows],
                         baseline=r.baseline_miou, title=f"{r.dataset} | {r.loader_config}")
    mious = [x["miou"] for x in r.rows if x["miou"] is not None]
    metadata = {
        "miou_trend": trend(mious, "mIoU per evaluation", digits=3),  # full curve: miou_curve
        "run": r.run,
        **table_written("training_runs", settings.results_db),
        **data_path(r.model_uri),  # the model file; its scores are rows of training_runs
        "model": dg.MetadataValue.path(r.model_uri),
        "device": r.device,
        "steps": dg.MetadataValue.int(r.steps),
        "final_miou": number(r.miou, "score"),
        "baseline_miou": number(r.baseline_miou, "score"),
        "per_class_iou": dg.MetadataValue.json(r.per_class_iou),
        "samples_per_s": number(r.samples_per_s, "samples/s"),
        "data_wait_fraction": number(r.data_wait, "fraction"),
        "loader": dg.MetadataValue.json(r.loader),
        "content_hash": dg.MetadataValue.text(r.content_hash or ""),
        "miou_curve": dg.MetadataValue.md(png_markdown(png, "mIoU")),
    }
    if r.gpu_util is not None:
        metadata["gpu_utilization_pct"] = number(r.gpu_util, "%")  # NVML: percent busy
    return dg.MaterializeResult(metadata=metadata)
