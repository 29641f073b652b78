"""The `ocog` command: thin argparse front-ends over the same library calls the assets make.

Each command group lives in a `register_<group>(subparsers)` function; a new group (in this
module or another) joins by adding its "module:function" to COMMAND_GROUPS. Heavy imports
(rasterio, torch, dagster) happen inside the command that needs them, so `ocog --help`
stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ocog_lib import __version__
from ocog_lib.cli.types import OcogParser, at_least, default, int_range, non_negative_int
from ocog_lib.errors import OcogError
from ocog_lib.settings import DEFAULT_BENCH_SIZE, Settings, bench_size_from_env

COMMAND_GROUPS: tuple[str, ...] = (
    "ocog_lib.cli.main:register_query",
    "ocog_lib.cli.main:register_sample",
    "ocog_lib.cli.main:register_variants",
    "ocog_lib.cli.main:register_demo",
    "ocog_lib.cli.bench:register_bench",
    "ocog_lib.cli.data:register_data",
    "ocog_lib.cli.export:register_export",
    "ocog_lib.cli.train:register_train",
    "ocog_lib.cli.search:register_search",
    "ocog_lib.cli.s3:register_s3",
    "ocog_lib.cli.serve:register_serve",
    "ocog_lib.cli.similar:register_similar",
    "ocog_lib.cli.embed:register_embed",
    "ocog_lib.cli.compress:register_compress",
)

# Columns `ocog variants write` prints; the full rows go to DuckDB.
_STAT_COLUMNS = ("item", "kind", "bytes", "compression_ratio", "write_seconds", "is_valid_cog",
                 "lossless_ok")


# --- query ---------------------------------------------------------------------------------


def register_query(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "query", help="run SQL on the DuckDB results file",
        description="Run one SQL statement, read-only, on the results file ($OCOG_DUCKDB, "
        "default $OCOG_DATA_DIR/ocog.duckdb, i.e. data/ocog.duckdb), "
        "e.g. ocog query \"select * from variant_stats\". "
        "A sandbox: no writes, no other files, no extensions, no settings.",
    )
    p.add_argument("sql", help="one SQL statement")
    p.add_argument("--db", type=Path, default=None,
                   help="results file (default: $OCOG_DUCKDB, else $OCOG_DATA_DIR/ocog.duckdb)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_query)


def _cmd_query(args: argparse.Namespace) -> int:
    from ocog_lib import results

    db = args.db or Settings.from_env().results_db
    columns, rows = results.query(db, args.sql)
    if args.json:
        print(json.dumps({"columns": columns, "rows": [dict(zip(columns, r, strict=True))
                                                       for r in rows]}, default=str))
    else:
        print(results.format_table(columns, rows))
    note = results.spool_status(db).note(db)
    if note:
        print(f"ocog: note: {note}", file=sys.stderr)
    return 0


# --- sample --------------------------------------------------------------------------------


def register_sample(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sample", help="the embedded sample dataset",
        description="Build the embedded sample: real Sentinel-2 / Landsat subsets shipped with "
        "the package, no download.",
    )
    sub = p.add_subparsers(dest="sample_cmd", required=True, metavar="{build,timestack}")
    b = sub.add_parser(
        "build", help="raw scenes + the prepared sample (scenes, masks, benchmark scenes)",
        description="Write one raw scene per sensor tile, then prepare the sample dataset "
        "(scenes, masks, benchmark scenes, manifest.json) under $OCOG_DATA_DIR.",
    )
    b.add_argument("--bench-size", type=at_least(16), default=None,
                   help=f"benchmark scene edge in px (default: $OCOG_BENCH_SIZE or "
                        f"{DEFAULT_BENCH_SIZE})")
    b.add_argument("--n-bench", type=non_negative_int,
                   default=default("ocog_lib.data.sample", "prepare_sample", "n_bench"),
                   help="benchmark scenes")
    b.set_defaults(func=_cmd_sample_build)
    _register_sample_timestack(sub)


def _register_sample_timestack(sub: argparse._SubParsersAction) -> None:
    ts = "ocog_lib.data.timestack"
    t = sub.add_parser(
        "timestack", help="a dated Sentinel-2 stack derived from the sample (or Landsat + BQA)",
        description="Write a time stack (stack.json + one COG per band and scene) derived from "
        "the sample's real Sentinel-2 scene: a seasonal vegetation curve, synthetic clouds "
        "and shadows, an SCL band per scene (docs/data.md). --landsat writes the real cloudy "
        "Landsat 8 scene with its BQA band as a one-scene stack instead. Derived, not observed.",
    )
    t.add_argument("--out", type=Path, default=None,
                   help="stack folder (default: $OCOG_DATA_DIR/timestack/sample-s2, or "
                        "sample-l8 with --landsat)")
    t.add_argument("--dates", type=int_range(1, 366),
                   default=default(ts, "build_time_stack", "dates"),
                   help="scenes, spread over the year")
    t.add_argument("--size", type=at_least(64), default=default(ts, "build_time_stack", "size"),
                   help="crop edge in px")
    t.add_argument("--seed", type=non_negative_int,
                   default=default(ts, "build_time_stack", "seed"), help="cloud seed")
    t.add_argument("--year", type=int_range(1900, 9999),
                   default=default(ts, "build_time_stack", "year"), help="year of the dates")
    t.add_argument("--landsat", action="store_true",
                   help="the Landsat 8 scene with its real BQA (uses --size only)")
    t.set_defaults(func=_cmd_sample_timestack)


def _cmd_sample_timestack(args: argparse.Namespace) -> int:
    from ocog_lib.data.timestack import build_landsat_stack, build_time_stack

    stacks = Settings.from_env().data_dir / "timestack"
    if args.landsat:
        path = build_landsat_stack(args.out or stacks / "sample-l8", size=args.size)
    else:
        path = build_time_stack(args.out or stacks / "sample-s2", dates=args.dates,
                                size=args.size, seed=args.seed, year=args.year)
    stack = json.loads(path.read_text())
    print(f"time stack {stack['name']}: {path}")
    for scene in stack["scenes"]:
        print(f"  {scene['id']:24s} {scene['datetime']}  cloud {scene['cloud_cover']:5.1f} %")
    return 0


def build_sample(settings: Settings, *, bench_size: int, n_bench: int | None = None,
                 progress: Callable[[str], None] = lambda _msg: None):
    """Raw scenes for every sample tile, then the prepared sample; returns its manifest."""
    from ocog_lib.data.sample import build_raw_scene, prepare_sample, sample_tiles

    raws = {}
    for tile in sample_tiles():
        raws[tile] = build_raw_scene(tile, settings.raw_scene_path(tile))
        progress(f"raw scene {tile}: {raws[tile]}")
    more = {} if n_bench is None else {"n_bench": n_bench}  # None: prepare_sample's default
    return prepare_sample(raws, settings.prepared_dir("sample"), bench_size=bench_size, **more)


def _cmd_sample_build(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    bench_size = args.bench_size or bench_size_from_env()
    manifest = build_sample(settings, bench_size=bench_size, n_bench=args.n_bench,
                            progress=lambda m: print(m, file=sys.stderr))
    print(f"prepared {manifest.dataset} in {settings.prepared_dir('sample')}:")
    for item in manifest.items:
        print(f"  {item.role:5s} {item.name:20s} {item.image}"
              + (f"  mask {item.mask}" if item.mask else ""))
    return 0


# --- variants ------------------------------------------------------------------------------


_VARIANT_HELP = (
    "a profile: default, optimal_local, optimal_remote (`ocog variants list` shows their "
    "settings), or a custom spec CODEC[:key=value,...] with keys level, predictor (1-3), "
    "block (128-1024), overviews (count, 0 or auto), resampling, interleave (pixel|band), "
    "max_z_error (LERC), name, e.g. \"zstd:level=1,predictor=2,block=256\""
)


def register_variants(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "variants", help="COG variants of a prepared dataset",
        description="Write COG variants (compression, blocks, predictor, interleave); "
        "list the named profiles and the custom spec syntax.",
    )
    sub = p.add_subparsers(dest="variants_cmd", required=True, metavar="{write,list,verify}")
    w = sub.add_parser(
        "write", help="write one variant and record its stats",
        description="Write every image and mask of a prepared dataset as COGs under one "
        "profile, validate them, check losslessness, and record the rows in variant_stats. "
        "Ctrl-C stops at once and leaves no temporary file; what an earlier killed run left "
        "is removed.",
    )
    w.add_argument("--dataset", default="sample", help="prepared dataset")
    w.add_argument("--variant", required=True, help=_VARIANT_HELP)
    w.add_argument("--no-check", action="store_true", help="skip validation and lossless check")
    w.add_argument("--no-record", action="store_true", help="do not write to DuckDB")
    w.add_argument("--json", action="store_true", help="print one JSON object")
    w.set_defaults(func=_cmd_variants_write)
    ls = sub.add_parser(
        "list", help="the named profiles and the custom spec syntax",
        description="The named COG profiles (codec, level, predictor, block size, ...) and "
        "how to write a custom one for --variant.",
    )
    ls.add_argument("--json", action="store_true", help="print one JSON object")
    ls.set_defaults(func=_cmd_variants_list)
    v = sub.add_parser(
        "verify", help="re-hash a written variant against its content manifest",
        description="Re-read every file of a written variant and compare it with the content "
        "manifest (content.json) written with it; print its content hash, the one every "
        "measurement row of it names (content_hash), or name each file that changed.",
    )
    v.add_argument("--dataset", default="sample", help="prepared dataset")
    v.add_argument("--variant", required=True, help="a written variant's name")
    v.set_defaults(func=_cmd_variants_verify)


def _cmd_variants_verify(args: argparse.Namespace) -> int:
    from ocog_lib.data.lineage import verify_folder
    from ocog_lib.data.locate import variant_folder

    folder = variant_folder(args.dataset, args.variant, Settings.from_env())
    print(f"{args.dataset}|{args.variant}: content_hash {verify_folder(folder)} ({folder})")
    return 0


def _cmd_variants_list(args: argparse.Namespace) -> int:
    from ocog_lib import results
    from ocog_lib.cog.profiles import profile_rows, spec_syntax

    rows = profile_rows()
    if args.json:
        print(json.dumps({"profiles": rows, "custom": spec_syntax()}))
        return 0
    columns = list(rows[0])
    print(results.format_table(columns, [[r[c] for c in columns] for r in rows]))
    print("\ncustom profile (--variant):")
    for line in spec_syntax():
        print(f"  {line}")
    print("masks are always written losslessly with the image's block size.")
    return 0


def write_variant_and_record(settings: Settings, dataset: str, variant: str, *,
                             check: bool = True, record: bool = True) -> list[dict]:
    """Write one variant of a prepared dataset; its stat rows replace the variant's old rows."""
    from ocog_lib import results
    from ocog_lib.cog.profiles import resolve_profile
    from ocog_lib.cog.write import write_variant
    from ocog_lib.data.manifest import DatasetManifest

    profile = resolve_profile(variant)  # a typo fails before any file is read
    manifest = DatasetManifest.load(settings.prepared_dir(dataset))
    _, rows = write_variant(manifest, profile, settings.variant_dir(dataset, profile.name),
                            check=check)
    if record:
        results.write_rows(settings.results_db, "variant_stats", rows,
                           replace_where={"dataset": dataset, "variant": profile.name})
    return rows


def _cmd_variants_write(args: argparse.Namespace) -> int:
    from ocog_lib import results

    settings = Settings.from_env()
    rows = write_variant_and_record(settings, args.dataset, args.variant,
                                    check=not args.no_check, record=not args.no_record)
    if args.json:
        print(json.dumps({"rows": rows}, default=str))
        return 0
    print(results.format_table(_STAT_COLUMNS, [[r.get(c) for c in _STAT_COLUMNS] for r in rows]))
    if not args.no_record:
        print(f"recorded {len(rows)} rows in variant_stats of {settings.results_db}")
    return 0


# --- demo ----------------------------------------------------------------------------------


def register_demo(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="materialize every asset of the sample through Dagster",
        description="Run the sample's assets as real Dagster runs on the instance at "
        "$DAGSTER_HOME: starts `dagster dev` (127.0.0.1, a free port, stopped when done), "
        "submits the runs wave by wave to its run queue, so `make dev`'s UI lists them on "
        "each job's Runs tab: tiles, dataset, COG variants, benchmarks, a short search and "
        "grid, brief training under two loader configs, the HDF5 package, embeddings and the "
        "compressed archive; then print the results tables. "
        "$OCOG_BENCH_SIZE sets the benchmark scene size, $OCOG_BENCH_SECONDS the seconds per "
        "benchmark measurement (default: the quick profile).",
    )
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    """The one place ocog_lib reaches into the Dagster layer.

    `ocog demo` must run the real asset graph so the runs appear in the UI; ocog_lib never
    imports dagster or ocog_assets at module level, so the Dagster code lives in
    ocog_assets/demo.py and is imported here, lazily, by name.
    """
    from ocog_lib import results

    demo = importlib.import_module("ocog_assets.demo")
    settings = Settings.from_env()
    demo.materialize_sample(progress=lambda m: print(m, file=sys.stderr, flush=True))
    columns, rows = results.query(
        settings.results_db,
        # each partition's run measures its own reference default side by side: `run`
        # names the partition so its three reference rows are not read as one
        "SELECT (SELECT any_value(t.variant) FROM stream_benchmarks t WHERE t.run_id = "
        "s.run_id AND t.loader = 'ocog') AS run, name, variant, "
        "round(samples_per_s) AS samples_per_s, "
        "round(ratio_vs_reference_default, 2) AS x_reference, "
        "round(ratio_vs_limit, 2) AS x_limit, round(cache_hit_rate, 2) AS hit "
        "FROM stream_benchmarks s WHERE run_id IN (SELECT run_id FROM stream_benchmarks "
        "GROUP BY run_id ORDER BY max(ts) DESC LIMIT 3) "
        "ORDER BY run, loader = 'reference' DESC, variant, samples_per_s DESC",
    )
    print("stream_benchmarks (the latest run of each variant partition):")
    print(results.format_table(columns, rows))
    print()
    for title, sql in (
        ("best_configs (the search's winner per dataset x storage):",
         "SELECT dataset, storage, round(samples_per_s) AS samples_per_s, params "
         "FROM best_configs ORDER BY dataset, storage"),
        ("model_comparison (same time budget, per loader config):",
         "SELECT dataset, loader_config, round(seconds) AS seconds, samples_seen, "
         "round(final_miou, 3) AS final_miou, round(samples_per_s) AS samples_per_s, "
         "round(data_wait, 2) AS data_wait, device FROM model_comparison "
         "ORDER BY dataset, loader_config"),
    ):
        columns, rows = results.query(settings.results_db, sql)
        print(title)
        print(results.format_table(columns, rows))
        print()
    columns, rows = results.query(
        settings.results_db,
        "SELECT * FROM variant_stats ORDER BY dataset, variant, item, kind",
    )
    print(results.format_table(columns, rows))
    return 0


# --- entry point ---------------------------------------------------------------------------


def build_parser(groups: Sequence[str] = COMMAND_GROUPS) -> argparse.ArgumentParser:
    parser = OcogParser(
        prog="ocog",
        description="Stream Earth-observation imagery from Cloud-Optimized GeoTIFFs into "
        "PyTorch; every measurement lands in DuckDB.",
    )
    parser.add_argument("--version", action="version", version=f"ocog {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for spec in groups:
        module, _, func = spec.partition(":")
        getattr(importlib.import_module(module), func)(subparsers)
    return parser


class Interrupted(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the same cleanup runs on the way out."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises Interrupted (its default would skip all cleanup)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_interrupted(signum: int, _frame) -> None:
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, raise_interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with _terminate_as_interrupt():
            return int(args.func(args) or 0)
    except OcogError as exc:
        print(f"ocog: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        print(f"ocog: interrupted ({signal.Signals(signum).name}), stopped before the end",
              file=sys.stderr)  # fmt: skip
        return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
