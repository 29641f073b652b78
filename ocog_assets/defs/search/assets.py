"""search_results and grid_results: thin wrappers over ocog_lib.search, one per dataset|storage.

Both run in the single-slot `benchmark` pool: two measurements at once would measure each
other. Trials and cells reach DuckDB through results.write_rows inside the library; the
assets attach the best configuration and the plots (saved under data/search/...).
"""


import dagster as dg
from pydantic import Field

from ocog_assets.defs.common import owners
from ocog_assets.defs.common.metadata import number, table_definition, table_written, trend
from ocog_assets.defs.common.pools import BENCHMARK_POOL
from ocog_assets.defs.common.resources import OcogPaths
from ocog_assets.defs.common.worker_processes import clean_worker_start
from ocog_assets.defs.data.assets import prepared_datasets
from ocog_assets.defs.search.partitions import dataset_and_storage, dataset_storage


class SearchConfig(dg.Config):
    """A TPE study; the named profiles' configurations run first as enqueued trials."""

    trials: int = Field(20, description="searched trials, besides the named baselines")
    seconds: float = Field(2.0, description="steady-state seconds per trial")
    seed: int = Field(0, description="TPE sampler seed")
    warmup_seconds: float = Field(0.5, description="after the first batch, not counted")
    study: str | None = Field(
        None, description="study to create or join (runs/machines share one with an RDB "
        "storage); None = a new one",
    )  # fmt: skip
    storage_url: str | None = Field(
        None, description="optuna storage URL or journal path; None = $OCOG_OPTUNA_STORAGE "
        "or <data>/optuna.journal",
    )  # fmt: skip
    patch_sizes: list[int] = Field([256], description="patch sizes searched (fixed by default)")
    max_workers: int = Field(2, description="DataLoader processes searched in 0..N")
    baselines: bool = True
    rtt_ms: float = Field(30.0, description="remote: emulated per-request delay")
    cap_mb_s: float = Field(100.0, description="remote: bandwidth cap")


class GridConfig(dg.Config):
    """Two variables (e.g. compression x block_size), every cell measured `repeats` times."""

    var1: str = "compression"
    var2: str = "block_size"
    values: dict[str, list[str]] = Field(
        {}, description="values per variable, e.g. {'compression': ['none', 'zstd']}; "
        "a variable left out takes its defaults",
    )  # fmt: skip
    repeats: int = 3
    seconds: float = 2.0
    warmup_seconds: float = 0.5
    rtt_ms: float = 30.0
    cap_mb_s: float = 100.0


def _plot_md(path: str, title: str) -> dg.MetadataValue:
    from ocog_lib.search.plots import png_markdown

    return dg.MetadataValue.md(f"{png_markdown(path, title)}\n\n`{path}`")


@dg.asset(
    partitions_def=dataset_storage,
    deps=[prepared_datasets],
    pool=BENCHMARK_POOL,
    group_name="search",
    owners=owners.BENCHMARKS,
    metadata=table_definition("search_trials"),
    kinds={"optuna", "duckdb"},
    description="A TPE search over COG profiles and engine knobs for one dataset|storage: "
    "trials in the DuckDB table search_trials (view best_configs), the trial plot beside "
    "them under data/search/<dataset>/<storage>/.",
)
def search_results(
    context: dg.AssetExecutionContext, config: SearchConfig, paths: OcogPaths
) -> dg.MaterializeResult:
    from ocog_lib.search.bayes import BayesianOptions, run_bayesian
    from ocog_lib.search.files import RemoteOptions
    from ocog_lib.search.plots import save_study_plots
    from ocog_lib.search.space import SearchSpace

    dataset, storage = dataset_and_storage(context)
    settings = paths.settings()
    opts = BayesianOptions(
        space=SearchSpace(patch_sizes=tuple(config.patch_sizes), max_workers=config.max_workers),
        warmup_seconds=config.warmup_seconds,
        baselines=config.baselines,
        study_name=config.study,
        remote=RemoteOptions(rtt_ms=config.rtt_ms, cap_mb_s=config.cap_mb_s),
    )
    with clean_worker_start():
        result = run_bayesian(
            dataset, storage, config.trials, config.seed, settings, seconds=config.seconds,
            storage_url=config.storage_url, options=opts,
            progress=lambda done, total, msg: context.log.info(f"[{done}/{total}] {msg}"),
        )  # fmt: skip
    plots = save_study_plots(result, settings)
    summary = result.summary()
    best, base = result.best, result.best_baseline
    done = [t.value for t in result.trials if t.state == "COMPLETE" and t.value is not None]
    meta: dict[str, object] = {
        "study": result.study,
        "optuna_storage": result.optuna_storage,
        "trials": dg.MetadataValue.int(summary["trials"]),
        "states": dg.MetadataValue.json(summary["states"]),
        "trials_trend": trend(done, "samples/s per completed trial"),
        "trials_plot": _plot_md(plots["trials"], "samples/s per trial"),
        "trials_plot_path": dg.MetadataValue.path(plots["trials"]),
        **table_written("search_trials", settings.results_db),
    }
    if best is not None:
        meta["best_samples_per_s"] = number(best.value, "samples/s")
        meta["best_mb_per_s"] = number(best.mb_per_s or 0.0, "MB/s")
        meta["best_config"] = dg.MetadataValue.json(best.config)
        meta["content_hash"] = dg.MetadataValue.text(best.content_hash or "")
    if base is not None:
        meta["best_named_profile"] = f"{base.baseline} ({base.value:.0f} samples/s)"
        meta["best_named_samples_per_s"] = number(base.value, "samples/s")
    if summary["speedup_vs_baseline"]:
        meta["speedup_vs_named"] = number(summary["speedup_vs_baseline"], "ratio")
    return dg.MaterializeResult(metadata=meta)


@dg.asset(
    partitions_def=dataset_storage,
    deps=[prepared_datasets],
    pool=BENCHMARK_POOL,
    group_name="search",
    owners=owners.BENCHMARKS,
    metadata=table_definition("grid_cells"),
    kinds={"duckdb"},
    description="A two-variable grid (like the OCOG toolkit's grid_search) for one "
    "dataset|storage: mean and std of samples/s per cell in the DuckDB table grid_cells, "
    "a heatmap beside them under data/search/<dataset>/<storage>/.",
)
def grid_results(
    context: dg.AssetExecutionContext, config: GridConfig, paths: OcogPaths
) -> dg.MaterializeResult:
    from ocog_lib.search.files import RemoteOptions
    from ocog_lib.search.grid import run_grid
    from ocog_lib.search.plots import save_grid_plots

    dataset, storage = dataset_and_storage(context)
    settings = paths.settings()
    with clean_worker_start():
        result = run_grid(
            dataset, storage, config.var1, config.values.get(config.var1), config.var2,
            config.values.get(config.var2), config.repeats, settings, seconds=config.seconds,
            warmup_seconds=config.warmup_seconds,
            remote=RemoteOptions(rtt_ms=config.rtt_ms, cap_mb_s=config.cap_mb_s),
            progress=lambda done, total, msg: context.log.info(f"[{done}/{total}] {msg}"),
        )  # fmt: skip
    plots = save_grid_plots(result, settings)
    cells = dg.MetadataValue.table(
        records=[
            dg.TableRecord({config.var1: c.value1, config.var2: c.value2,
                            "mean_samples_per_s": round(c.mean, 1) if c.mean else None,
                            "std_samples_per_s": round(c.std, 1) if c.std is not None else None,
                            "note": c.reason or ""})
            for c in result.cells
        ],
        schema=dg.TableSchema(columns=[
            dg.TableColumn(config.var1, "string"), dg.TableColumn(config.var2, "string"),
            dg.TableColumn("mean_samples_per_s", "number"),
            dg.TableColumn("std_samples_per_s", "number"), dg.TableColumn("note", "string"),
        ]),
    )  # fmt: skip
    meta: dict[str, object] = {
        "grid_id": result.grid_id,
        "cells": cells,
        "heatmap": _plot_md(plots["heatmap"], f"{config.var1} x {config.var2}"),
        "heatmap_path": dg.MetadataValue.path(plots["heatmap"]),
        **table_written("grid_cells", settings.results_db),
    }
    best = result.best
    if best is not None:
        meta["best"] = f"{config.var1}={best.value1} {config.var2}={best.value2}"
        meta["best_samples_per_s"] = number(best.mean, "samples/s")
        meta["best_config"] = dg.MetadataValue.json(best.config)
        meta["content_hash"] = dg.MetadataValue.text(best.content_hash or "")
    return dg.MaterializeResult(metadata=meta)
