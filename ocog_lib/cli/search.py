"""`ocog search bayesian|grid`: the fastest configuration, with progress bars.

The same library calls as the `search_results` and `grid_results` assets: run_bayesian /
run_grid, then the plots saved under data/search/<dataset>/<storage>/ (`search.runs`).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

from ocog_lib.cli import types as T
from ocog_lib.settings import Settings

_BAYES = "ocog_lib.search.bayes"
_GRID = "ocog_lib.search.grid"
_FILES = "ocog_lib.search.files"


def register_search(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "search",
        help="find the fastest format + loader configuration",
        description="Bayesian (optuna TPE) search or a two-variable grid over COG profiles "
        "and engine knobs; every trial lands in DuckDB (search_trials, grid_cells; "
        "`ocog query \"select * from best_configs\"`).",
    )
    sub = p.add_subparsers(dest="search_cmd", required=True, metavar="{bayesian,grid}")

    b = sub.add_parser(
        "bayesian",
        help="TPE study; the named profiles run first as enqueued trials",
        description="A TPE study (seeded, median pruner). Several processes or machines can "
        "share one study: give them the same --study and an optuna storage they all reach "
        "(--storage-url or $OCOG_OPTUNA_STORAGE, e.g. postgresql://...; default: the "
        "journal file <data dir>/optuna.journal).",
    )
    _common(b, _BAYES, "run_bayesian")
    space = T.defaults_of("ocog_lib.search.space", "SearchSpace")
    b.add_argument("--trials", type=T.positive_int, default=20, help="searched trials")
    b.add_argument("--seed", type=T.non_negative_int, default=0, help="sampler seed")
    b.add_argument("--study", default=None, help="study name to create or join "
                   "(default: a new study)")  # fmt: skip
    b.add_argument("--storage-url", default=None,
                   help="optuna storage URL or journal path (default: $OCOG_OPTUNA_STORAGE, "
                   "else <data dir>/optuna.journal)")  # fmt: skip
    b.add_argument("--no-baselines", action="store_true",
                   help="do not enqueue the named profiles' configurations")  # fmt: skip
    b.add_argument("--no-prune", action="store_true", help="measure every trial to the end")
    b.add_argument("--patch-sizes", type=T.list_of(T.positive_int), default=space["patch_sizes"],
                   help="comma-separated patch sizes to search (default: "
                   f"{','.join(map(str, space['patch_sizes']))}, fixed)")  # fmt: skip
    b.add_argument("--max-workers", type=T.non_negative_int, default=space["max_workers"],
                   help="DataLoader processes tried: 0..N")
    b.set_defaults(func=_cmd_bayesian)

    g = sub.add_parser(
        "grid",
        help="two variables, every cell measured --repeats times",
        description="Like the OCOG toolkit's grid_search --var1 compression --var2 block_size: "
        "mean and std of samples/s per cell.",
    )
    _common(g, _GRID, "run_grid")
    g.add_argument("--var1", required=True,
                   help="first variable, e.g. compression, block_size, sampler (an unknown "
                   "name lists them all)")  # fmt: skip
    g.add_argument("--var2", required=True, help="second variable, e.g. block_size")
    g.add_argument("--values1", type=T.name_list, default=None,
                   help="comma-separated values of --var1 (default: the variable's own list)")
    g.add_argument("--values2", type=T.name_list, default=None,
                   help="comma-separated values of --var2 (default: the variable's own list)")
    g.add_argument("--repeats", type=T.positive_int, default=3, help="runs per cell")
    g.set_defaults(func=_cmd_grid)


def _common(p: argparse.ArgumentParser, module: str, runner: str) -> None:
    """Flags both commands share; defaults from `runner`'s signature and RemoteOptions."""
    run = T.defaults_of(module, runner)
    remote = T.defaults_of(_FILES, "RemoteOptions")
    warmup = run.get("warmup_seconds", T.default(_BAYES, "BayesianOptions", "warmup_seconds"))
    p.add_argument("--dataset", default="sample", help="prepared dataset")
    p.add_argument("--storage", default="local", choices=["local", "remote"],
                   help="local files, or S3 through the WAN shaper")
    p.add_argument("--seconds", type=T.positive_float, default=run["seconds"],
                   help="steady-state seconds per run")
    p.add_argument("--warmup", type=T.non_negative_float, default=warmup,
                   help="seconds after the first batch, not counted (reported apart)")
    p.add_argument("--rtt-ms", type=T.non_negative_float, default=remote["rtt_ms"],
                   help="remote: delay per request, ms")
    p.add_argument("--cap-mb-s", type=T.positive_float, default=remote["cap_mb_s"],
                   help="remote: bandwidth cap, MB/s")
    p.add_argument("--json", action="store_true", help="print one JSON object")


class _Bar:
    """tqdm over trials or cells; quiet with --json."""

    def __init__(self, quiet: bool, unit: str):
        from tqdm import tqdm

        self.bar = tqdm(total=0, unit=unit, file=sys.stderr, disable=quiet, dynamic_ncols=True)

    def __call__(self, done: int, total: int, message: str) -> None:
        self.bar.total = total
        self.bar.set_postfix_str(message, refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def _cmd_bayesian(args: argparse.Namespace) -> int:
    from ocog_lib.search.bayes import BayesianOptions
    from ocog_lib.search.files import RemoteOptions
    from ocog_lib.search.runs import bayesian_with_plots
    from ocog_lib.search.space import SearchSpace

    settings = Settings.from_env()
    space = replace(SearchSpace(), max_workers=args.max_workers,
                    patch_sizes=tuple(args.patch_sizes))  # fmt: skip
    opts = BayesianOptions(
        space=space,
        warmup_seconds=args.warmup,
        baselines=not args.no_baselines,
        study_name=args.study,
        prune=not args.no_prune,
        remote=RemoteOptions(rtt_ms=args.rtt_ms, cap_mb_s=args.cap_mb_s),
    )
    bar = _Bar(args.json, "trial")
    try:
        result = bayesian_with_plots(args.dataset, args.storage, args.trials, args.seed,
                                     settings, seconds=args.seconds, progress=bar,
                                     storage_url=args.storage_url, options=opts)  # fmt: skip
    finally:
        bar.close()
    plots = result.plots
    summary = {**result.summary(), "plots": plots, "optuna_storage": result.optuna_storage}
    if args.json:
        print(json.dumps(summary, default=str))
        return 0
    print(f"study {result.study} ({result.optuna_storage}): {summary['trials']} trials "
          f"{summary['states']}")  # fmt: skip
    for label, rec in (("best", result.best), ("best named profile", result.best_baseline)):
        if rec is not None:
            print(f"{label}: trial {rec.number}, {rec.value:.0f} samples/s, "
                  f"{rec.mb_per_s:.0f} MB/s, {_short(rec.config)}")  # fmt: skip
    if summary["speedup_vs_baseline"]:
        print(f"search / best named profile: {summary['speedup_vs_baseline']:.2f}x")
    print(f"plot: {plots['trials']}")
    return 0


def _short(config: dict) -> str:
    keys = ("variant", "sampler", "patch_size", "workers", "threads", "prefetch", "cache_mb",
            "patches_per_tile", "io_threads")  # fmt: skip
    return " ".join(f"{k}={config[k]}" for k in keys if config.get(k) not in (None, -1))


def _cmd_grid(args: argparse.Namespace) -> int:
    from ocog_lib.search.files import RemoteOptions
    from ocog_lib.search.runs import grid_with_plots

    settings = Settings.from_env()
    split = lambda v: list(v) if v else None  # noqa: E731
    remote = RemoteOptions(rtt_ms=args.rtt_ms, cap_mb_s=args.cap_mb_s)
    bar = _Bar(args.json, "run")
    try:
        result = grid_with_plots(args.dataset, args.storage, args.var1, split(args.values1),
                                 args.var2, split(args.values2), args.repeats, settings,
                                 seconds=args.seconds, warmup_seconds=args.warmup,
                                 progress=bar, remote=remote)  # fmt: skip
    finally:
        bar.close()
    plots = result.plots
    cells = [
        {"value1": c.value1, "value2": c.value2, "mean_samples_per_s": c.mean,
         "std_samples_per_s": c.std, "reason": c.reason}
        for c in result.cells
    ]  # fmt: skip
    if args.json:
        print(json.dumps({"grid_id": result.grid_id, "cells": cells, "plots": plots}, default=str))
        return 0
    from ocog_lib.results import format_table

    cols = [args.var1, args.var2, "mean samples/s", "std", "note"]
    rows = [(c["value1"], c["value2"], c["mean_samples_per_s"], c["std_samples_per_s"],
             c["reason"] or "") for c in cells]  # fmt: skip
    print(format_table(cols, rows))
    best = result.best
    if best is not None:
        print(f"best: {args.var1}={best.value1} {args.var2}={best.value2} "
              f"({best.mean:.0f} ± {best.std:.0f} samples/s)")  # fmt: skip
    print(f"grid {result.grid_id}; plot: {plots['heatmap']}")
    return 0
