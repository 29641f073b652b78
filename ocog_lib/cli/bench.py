"""`ocog bench ...`: the benchmark commands (same library calls as the assets)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

from ocog_lib.cli import types as T
from ocog_lib.cli.retrieval import register_bench_retrieval
from ocog_lib.cli.similar import register_bench_similar
from ocog_lib.cli.types import stream_default
from ocog_lib.settings import Settings

_COMPARE = ("ocog_lib.bench.config", "CompareConfig")
_REMOTE = ("ocog_lib.bench.config", "RemoteCompareConfig")
_HDF5 = ("ocog_lib.bench.config", "Hdf5BenchConfig")
_TILES = ("ocog_lib.bench.tiles", "TileBenchConfig")
_ENDPOINT = "ocog_lib.remote.endpoint"  # the bucket variable and its default
_SECONDS = 5.0  # `bench stream`: timed seconds (no library default: the CLI's own)


def register_bench(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser(
        "bench",
        help="measure streaming throughput",
        description="Throughput benchmarks: one engine configuration, or ocog against the "
        "OCOG toolkit's loader and the decode limit in one run.",
    )
    sub = bench.add_subparsers(dest="bench_cmd", required=True,
                               metavar="{stream,epoch,files,compare,tiles,similar,retrieval}")
    _register_stream(sub)
    _register_epoch(sub)
    _register_files(sub)
    _register_compare(sub)
    _register_tiles(sub)
    register_bench_similar(sub)  # `bench similar` (cli/similar.py)
    register_bench_retrieval(sub)  # `bench retrieval` (cli/retrieval.py)


def _register_stream(sub: argparse._SubParsersAction) -> None:
    """`bench stream`: every engine flag defaults to StreamConfig's own default."""
    s = sub.add_parser(
        "stream",
        help="one configuration of the ocog engine",
        description="Measure one configuration of the ocog engine (defaults: the engine's, "
        "StreamConfig).",
    )
    _common(s)
    d = stream_default
    s.add_argument("--variant", default="default",
                   help="written COG variant folder: a profile name or a custom spec's name "
                   "(`ocog variants list`)")  # fmt: skip
    s.add_argument("--sampler", default=d("sampler"), choices=["random", "block", "grid"],
                   help="window sampler")  # fmt: skip
    s.add_argument("--patch-size", type=T.positive_int, default=d("patch_size"),
                   help="patch edge in px")  # fmt: skip
    s.add_argument("--batch-size", type=T.positive_int, default=d("batch_size"),
                   help="patches per batch")  # fmt: skip
    s.add_argument("--workers", type=T.non_negative_int, default=d("workers"),
                   help="DataLoader processes; 0 = threads in this process")
    s.add_argument("--threads", type=T.non_negative_int, default=d("threads"),
                   help="decode threads per process; 0 = the machine's cores divided by "
                   "--workers (all of them with 0 workers, at least 1)")  # fmt: skip
    s.add_argument("--prefetch", type=T.positive_int, default=d("prefetch"),
                   help="batches assembled ahead, per process")
    s.add_argument("--cache-mb", type=T.positive_float, default=d("cache_mb"),
                   help="decoded-tile cache per process, MB")
    s.add_argument("--patches-per-tile", type=T.non_negative_int, default=d("patches_per_tile"),
                   help="windows per tile visit; 0 = auto (1 for local files, link-sized for "
                   "remote ones)")  # fmt: skip
    s.add_argument("--shuffle-tiles", type=T.positive_int, default=d("shuffle_tiles"),
                   help="tile visits whose windows are mixed together when reusing tiles")
    s.add_argument("--bands", type=T.band_list, default=d("bands"),
                   help="comma-separated 0-based band indices (default: all)")
    s.add_argument("--dtype", type=T.dtype_name, default=d("dtype"),
                   help=f"output dtype, one of {', '.join(T.DTYPES)} (default: the source's)")
    s.add_argument("--channels-last", action="store_true", default=d("channels_last"),
                   help="image batches in channels-last memory (NHWC strides, shape NCHW; "
                   "torch.channels_last): pixel-interleaved tiles copy row by row")  # fmt: skip
    s.add_argument("--mean", type=T.list_of(float), default=None,
                   help="per-band means (comma-separated, one per selected band): output "
                   "(x - mean) / std in the one patch copy (float32 unless --dtype); with --std")
    s.add_argument("--std", type=T.list_of(float), default=None, help="per-band std, with --mean")
    s.add_argument("--length", type=T.non_negative_int, default=0,
                   help="windows per epoch; 0 = enough for --seconds")
    s.add_argument("--seconds", type=T.positive_float, default=_SECONDS,
                   help="timed seconds (after a warm-up)")
    s.add_argument("--seed", type=T.non_negative_int, default=d("seed"), help="sampler seed")
    s.add_argument("--step-ms", type=T.non_negative_float, default=0.0,
                   help="also measure data-wait with a consumer taking this long per batch; "
                   "0 = skip")  # fmt: skip
    s.set_defaults(func=_cmd_stream)


def _normalization(args: argparse.Namespace):
    """--mean and --std as the engine's Normalization (both or neither)."""
    from ocog_lib.errors import InputError
    from ocog_lib.stream.normalize import Normalization

    if args.mean is None and args.std is None:
        return None
    if args.mean is None or args.std is None:
        raise InputError("--mean/--std", "give both, one value per band each")
    return Normalization.from_mean_std(args.mean, args.std)


def _register_epoch(sub: argparse._SubParsersAction) -> None:
    """`bench epoch`: the first batch and memory against the epoch's length."""
    e = sub.add_parser(
        "epoch", help="time to the first batch and RSS at epoch lengths 1e4..1e9",
        description="One engine configuration on a variant's bench scenes at each epoch "
        "length: time to the first batch (loader, windows, plan and first batch), RSS over "
        "what the process held before, then steady samples/s. Rows go to stream_benchmarks.",
    )
    _common(e)
    d, ep = stream_default, ("ocog_lib.bench.epoch", "EpochBenchConfig")
    e.add_argument("--lengths", type=T.list_of(T.count), default=T.default(*ep, "lengths"),
                   help="comma-separated windows per epoch, e.g. 1e4,1e7,1e9 (default: "
                   "1e4,1e5,1e6,1e7,1e8,1e9)")  # fmt: skip
    e.add_argument("--variant", default=T.default(*ep, "variant"), help="written COG variant")
    e.add_argument("--seconds", type=T.positive_float, default=T.default(*ep, "seconds"),
                   help="timed seconds after the first batch")
    e.add_argument("--sampler", default=d("sampler"), choices=["random", "block"],
                   help="window sampler")
    e.add_argument("--patch-size", type=T.positive_int, default=d("patch_size"),
                   help="patch edge in px")
    e.add_argument("--batch-size", type=T.positive_int, default=d("batch_size"),
                   help="patches per batch")
    e.add_argument("--patches-per-tile", type=T.non_negative_int,
                   default=d("patches_per_tile"), help="windows per tile visit; 0 = auto")
    e.set_defaults(func=_cmd_epoch)


def _cmd_epoch(args: argparse.Namespace) -> int:
    from ocog_lib.bench.epoch import EpochBenchConfig, bench_epochs, format_epochs
    from ocog_lib.stream.config import StreamConfig

    engine = StreamConfig(sampler=args.sampler, patch_size=args.patch_size,
                          batch_size=args.batch_size, patches_per_tile=args.patches_per_tile)
    cfg = EpochBenchConfig(lengths=tuple(args.lengths), variant=args.variant,
                           seconds=args.seconds)  # fmt: skip
    settings = Settings.from_env()

    def progress(msg: str) -> None:
        if not args.json:
            print(f"  {msg}", file=sys.stderr, flush=True)

    result = bench_epochs(args.dataset, engine, cfg, settings, progress)
    _print_and_record(result, format_epochs(result), args, settings)
    return 0


def _register_files(sub: argparse._SubParsersAction) -> None:
    """`bench files`: the first batch over many small COGs, cold and on a header index."""
    f = sub.add_parser(
        "files", help="time to the first batch over 1..1e4 small COGs, with a header index",
        description="Per file count, the first n of generated 256-px COGs (made once under "
        "$OCOG_DATA_DIR/bench_files) opened cold (every header parsed), building a header "
        "index, and warm (on that index: no header read): time to the first batch, header "
        "bytes read, index hits. Rows go to stream_benchmarks.",
    )
    fb = ("ocog_lib.bench.files", "FilesBenchConfig")
    f.add_argument("--counts", type=T.list_of(T.count), default=T.default(*fb, "counts"),
                   help="comma-separated file counts (default: 1,10,100,1000,10000)")
    f.add_argument("--patch-size", type=T.positive_int, default=T.default(*fb, "patch_size"),
                   help="patch edge in px")
    f.add_argument("--batch-size", type=T.positive_int, default=T.default(*fb, "batch_size"),
                   help="patches per batch")
    f.add_argument("--remote", action="store_true",
                   help="read the same files from S3 through the WAN shaper (rows with "
                   "storage=remote; a fourth row per count, changed: one object rewritten, its "
                   "index entry re-read): the configured endpoint, else the embedded one "
                   "(`ocog s3 serve`, or a private one for this run); objects under "
                   "files/bench_files-<id>/, put once (parallel PUTs, kept while their "
                   "bytes match)")  # fmt: skip
    f.add_argument("--rtt-ms", type=T.non_negative_float, default=T.default(*fb, "rtt_ms"),
                   help=f"remote: delay per request, ms (default: {T.default(*fb, 'rtt_ms'):g})")
    f.add_argument("--cap-mb-s", type=T.positive_float, default=T.default(*fb, "cap_mb_s"),
                   help=f"remote: bandwidth cap, MB/s (default: {T.default(*fb, 'cap_mb_s'):g})")
    f.add_argument("--json", action="store_true", help="print one JSON object")
    f.add_argument("--no-record", action="store_true", help="do not append to DuckDB")
    f.set_defaults(func=_cmd_files)


def _cmd_files(args: argparse.Namespace) -> int:
    from ocog_lib.bench.files import FilesBenchConfig, bench_many_files, format_files
    from ocog_lib.bench.files_remote import bench_remote_files

    cfg = FilesBenchConfig(counts=tuple(args.counts), patch_size=args.patch_size,
                           batch_size=args.batch_size, remote=args.remote,
                           rtt_ms=args.rtt_ms, cap_mb_s=args.cap_mb_s)  # fmt: skip
    settings = Settings.from_env()
    result = (bench_remote_files if args.remote else bench_many_files)(cfg, settings,
                                                                     _progress(args))
    _print_and_record(result, format_files(result), args, settings)
    return 0


def _both(key: str) -> str:
    """The default of a compare setting both configs have, local and remote."""
    local, remote = T.default(*_COMPARE, key), T.default(*_REMOTE, key)
    return f"(default: {local:g} local, {remote:g} with --remote)"


def _register_compare(sub: argparse._SubParsersAction) -> None:
    """`bench compare`: unset flags keep CompareConfig's (or RemoteCompareConfig's) values."""
    c = sub.add_parser(
        "compare",
        help="ocog vs the reference loader vs the decode limit",
        description="One run, same files, interleaved repeats, medians. Unset flags keep the "
        "run's config (CompareConfig, or RemoteCompareConfig with --remote; --quick: its "
        "quick() preset).",
    )
    _common(c)
    c.add_argument("--quick", action="store_true", help="one short repeat (< 60 s)")
    peers = ", ".join(n.replace(" ", "-") for n in T.constant("ocog_lib.bench.peers",
                                                              "PEER_NAMES"))  # fmt: skip
    c.add_argument("--peers", nargs="?", const="all", default=None, type=_peer_list,
                   help=f"also measure peer loaders, each in its own process on ocog's "
                   f"random windows: all, or comma-separated of {peers} (their venvs are "
                   "built on first use under $OCOG_DATA_DIR/peers)")  # fmt: skip
    c.add_argument("--repeats", type=T.positive_int, default=None,
                   help=f"interleaved repeats {_both('repeats')}")
    c.add_argument("--seconds", type=T.positive_float, default=None,
                   help=f"steady-state seconds per run {_both('seconds')}")
    c.add_argument("--cache-mb", type=T.positive_float, default=None,
                   help=f"decoded-tile cache (and GDAL_CACHEMAX) of every loader, MB "
                   f"{_both('cache_mb')}")  # fmt: skip
    c.add_argument("--channels-last", action="store_true",
                   default=T.default(*_COMPARE, "channels_last"),
                   help="ocog's image batches in channels-last memory (torch.channels_last): "
                   "rows named '... channels_last'")  # fmt: skip
    c.add_argument("--variants", type=T.name_list, default=None,
                   help="comma-separated variant names (default: "
                   f"{','.join(T.default(*_COMPARE, 'variants'))})")  # fmt: skip
    c.add_argument(
        "--hdf5",
        action="store_true",
        help="add HDF5 rows: the same patches packaged "
        f"({', '.join(T.default(*_HDF5, 'compressions'))}), "
        "read by a DataLoader with one worker per core (with --remote: "
        f"{T.default(*_REMOTE, 'hdf5_workers')} workers, by byte ranges from the same "
        "endpoint through the same shaper)",
    )
    c.add_argument(
        "--remote",
        action="store_true",
        help="read from S3 through the WAN shaper: the endpoint of OCOG_S3_ENDPOINT, else "
        "AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL; with none set, the embedded S3 server "
        "(moto) of `ocog s3 serve` when it runs, else a private one started for this run "
        f"only; bucket ${T.constant(_ENDPOINT, 'BUCKET_VAR')} (default "
        f"{T.constant(_ENDPOINT, 'DEFAULT_BUCKET')}), the variants' objects under "
        "variants/<dataset>/<variant>/",
    )
    _register_compare_sweep(c)
    c.add_argument("--rtt-ms", type=T.non_negative_float, default=T.default(*_REMOTE, "rtt_ms"),
                   help="remote: delay per request, ms")
    c.add_argument("--caps", type=T.list_of(T.positive_float), default=None,
                   help="remote: comma-separated bandwidth caps in MB/s (default: "
                   f"{','.join(f'{c:g}' for c in T.default(*_REMOTE, 'caps_mb_s'))})")
    c.set_defaults(func=_cmd_compare)


def _register_compare_sweep(c: argparse.ArgumentParser) -> None:
    """`bench compare --threads/--workers`: the cores sweep (CompareConfig.scaling_settings)."""
    c.add_argument("--threads", type=T.list_of(T.positive_int), default=None,
                   help="scaling with cores: comma-separated decode threads per process, e.g. "
                   "1,2,4,8,16: one more plain ocog row per sampler and setting, with cores "
                   "used, samples/s per core and the efficiency against the 1-core row (a "
                   "1-thread setting is always added); local only")  # fmt: skip
    c.add_argument("--workers", type=T.list_of(T.non_negative_int), default=None,
                   help="scaling with cores: comma-separated DataLoader processes (0 = threads "
                   "in this process), each setting with every --threads value (1 thread "
                   "without --threads); local only")  # fmt: skip


def _register_tiles(sub: argparse._SubParsersAction) -> None:
    """`bench tiles`: unset flags keep TileBenchConfig's values."""
    t = sub.add_parser(
        "tiles",
        help="cube XYZ tiles: ocog vs rio-tiler (and VirtuGhan), cold and warm, local and remote",
        description="The same tiles of a time stack per zoom, read by ocog's cube and by "
        "rio-tiler (same expression, mask and reducer), cold then warm, interleaved "
        "repeats, from local files and (--remote) from S3 through the WAN shaper: ms per "
        "tile p50/p95, bytes fetched per tile, the link's limit for cold remote tiles, and "
        "whether both outputs are equal (no speed is reported for outputs that differ). "
        "Rows go to DuckDB's tile_benchmarks (area rows, --area, to area_benchmarks).",
    )
    d = lambda key: T.default(*_TILES, key)  # noqa: E731
    t.add_argument("--stack", default=None,
                   help="time stack folder or stack.json (default: the sample's derived stack "
                   "under $OCOG_DATA_DIR/timestack/sample-s2, built on first use)")  # fmt: skip
    t.add_argument("--zooms", type=T.list_of(T.non_negative_int), default=None,
                   help="comma-separated zooms (default: the coarsest overview's, the native "
                   "one, one finer)")  # fmt: skip
    t.add_argument("--tiles", type=T.positive_int, default=d("tiles"),
                   help=f"tiles per zoom, inside the data (default: {d('tiles')})")
    t.add_argument("--expression", default=d("expression"),
                   help=f"band math per scene (default: {d('expression')})")
    t.add_argument("--reducer", default=d("reducer"),
                   help=f"temporal reducer (default: {d('reducer')})")
    t.add_argument("--repeats", type=T.positive_int, default=d("repeats"),
                   help=f"interleaved repeats (default: {d('repeats')})")
    t.add_argument("--resampling", type=T.list_of(str), default=None,
                   help="comma-separated rio-tiler resampling_method values, rows for each: "
                   f"nearest, bilinear (default: {d('resampling')}); nearest must match "
                   "rio-tiler bit for bit, bilinear within 1 DN per input band")  # fmt: skip
    _register_tiles_remote(t, d)
    t.add_argument("--peers", type=T.list_of(str), default=(),
                   help="comma-separated peers to add: virtughan (its tile computation and, "
                   "with --area, its export; in a venv of its own under "
                   "$OCOG_DATA_DIR/peers/, created from PyPI on first use)")  # fmt: skip
    t.add_argument("--area", type=T.non_negative_int, default=d("area"),
                   help="also the temporal reducer over an area of this many px a side "
                   "(e.g. 1024): ocog's read_bbox vs downloading the full scenes then numpy "
                   "(vs VirtuGhan's export with --peers virtughan), rows in area_benchmarks; "
                   "0 = skip (default)")  # fmt: skip
    t.add_argument("--area-dates", type=T.positive_int, default=d("area_dates"),
                   help=f"dates of the area's stack (default: {d('area_dates')})")
    t.add_argument("--json", action="store_true", help="print one JSON object")
    t.add_argument("--no-record", action="store_true", help="do not append to DuckDB")
    t.set_defaults(func=_cmd_tiles)


def _register_tiles_remote(t: argparse.ArgumentParser, d) -> None:
    t.add_argument("--remote", action="store_true",
                   help="also read the same COGs from S3 through the WAN shaper (rows with "
                   "location=remote beside the local ones): the configured endpoint, else "
                   "the embedded one (`ocog s3 serve`, or a private one for this run); ocog "
                   "by its storage layer, rio-tiler by GDAL's /vsis3/, same objects")  # fmt: skip
    t.add_argument("--remote-only", action="store_true",
                   help="remote rows only (no local pass)")
    t.add_argument("--rtt-ms", type=T.non_negative_float, default=d("rtt_ms"),
                   help=f"remote: delay per request, ms (default: {d('rtt_ms'):g})")
    t.add_argument("--cap-mb-s", type=T.positive_float, default=d("cap_mb_s"),
                   help=f"remote: bandwidth cap, MB/s (default: {d('cap_mb_s'):g})")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="sample", help="prepared dataset")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-record", action="store_true", help="do not append to DuckDB")


def _print_and_record(result, text: str, args: argparse.Namespace, settings: Settings) -> None:
    from ocog_lib.bench.rows import record

    print(json.dumps(result.to_dict(), default=str) if args.json else text)
    sys.stdout.flush()
    if not args.no_record:  # after printing: a failed store never takes the result with it
        record(result, settings)


def _cmd_stream(args: argparse.Namespace) -> int:
    from ocog_lib.bench.local import bench_stream
    from ocog_lib.bench.rows import format_stream
    from ocog_lib.stream.config import StreamConfig

    engine = StreamConfig(
        sampler=args.sampler,
        patch_size=args.patch_size,
        batch_size=args.batch_size,
        seed=args.seed,
        workers=args.workers,
        threads=args.threads,
        prefetch=args.prefetch,
        cache_mb=args.cache_mb,
        patches_per_tile=args.patches_per_tile,
        shuffle_tiles=args.shuffle_tiles,
        dtype=args.dtype,
        bands=args.bands,
        normalize=_normalization(args),
        channels_last=args.channels_last,
    )
    settings = Settings.from_env()
    result = bench_stream(
        args.dataset, args.variant, engine, seconds=args.seconds, length=args.length,
        step_ms=args.step_ms, settings=settings,
    )  # fmt: skip
    _print_and_record(result, format_stream(result), args, settings)
    return 0


def _overrides(args: argparse.Namespace) -> dict:
    """Compare settings given on the command line (local and remote share them)."""
    out: dict = {"dataset": args.dataset}
    for name in ("repeats", "seconds", "cache_mb"):
        if getattr(args, name) is not None:
            out[name] = getattr(args, name)
    if args.variants:
        out["variants"] = args.variants
    if getattr(args, "channels_last", False):
        out["channels_last"] = True
    if getattr(args, "peers", None):
        out["peers"] = args.peers
    return out


def _peer_list(text: str) -> tuple[str, ...]:
    from ocog_lib.bench.peers import PEER_NAMES

    if text == "all":
        return PEER_NAMES
    return T.name_list(text)


def _progress(args: argparse.Namespace):
    def progress(msg: str) -> None:
        if not args.json:
            print(f"  {msg}", file=sys.stderr, flush=True)

    return progress


def _cmd_compare(args: argparse.Namespace) -> int:
    sweep = {"sweep_threads": tuple(args.threads or ()), "sweep_workers": tuple(args.workers or ())}
    if args.remote:
        if any(sweep.values()):
            from ocog_lib.errors import InputError

            raise InputError("--threads/--workers", "the cores sweep runs on local files only")
        return _cmd_compare_remote(args)
    from ocog_lib.bench.config import CompareConfig
    from ocog_lib.bench.hdf5 import compare_with_hdf5
    from ocog_lib.bench.local import compare, format_scaling
    from ocog_lib.bench.rows import format_comparison

    base = CompareConfig.quick() if args.quick else CompareConfig()
    cfg = replace(base, **_overrides(args), **sweep)
    settings = Settings.from_env()
    run = compare_with_hdf5 if args.hdf5 else compare
    result = run(cfg, settings, progress=_progress(args))
    scaling = format_scaling(result)
    text = format_comparison(result) + (f"\n\n{scaling}" if scaling else "")
    _print_and_record(result, text, args, settings)
    return 0


def _cmd_compare_remote(args: argparse.Namespace) -> int:
    from ocog_lib.bench.config import RemoteCompareConfig
    from ocog_lib.bench.remote import compare_remote
    from ocog_lib.bench.rows import check_remote_rows, format_comparison

    overrides = {**_overrides(args), "rtt_ms": args.rtt_ms}
    if args.hdf5:
        overrides["hdf5"] = T.default(*_HDF5, "compressions")
    if args.caps:
        overrides["caps_mb_s"] = args.caps
    cfg = replace(RemoteCompareConfig.quick() if args.quick else RemoteCompareConfig(), **overrides)
    settings = Settings.from_env()
    result = compare_remote(cfg, settings, progress=_progress(args))
    _print_and_record(result, format_comparison(result), args, settings)
    check_remote_rows(result)
    return 0


def _cmd_tiles(args: argparse.Namespace) -> int:
    from ocog_lib.bench.tiles import TileBenchConfig, compare_tiles, format_tiles, record_tiles

    locations = ("remote",) if args.remote_only else ("local", "remote") if args.remote else (
        "local",)  # fmt: skip
    cfg = TileBenchConfig(stack=args.stack, zooms=tuple(args.zooms) if args.zooms else None,
                          tiles=args.tiles, expression=args.expression, reducer=args.reducer,
                          repeats=args.repeats, resamplings=tuple(args.resampling or ()),
                          locations=locations, rtt_ms=args.rtt_ms, cap_mb_s=args.cap_mb_s,
                          peers=tuple(args.peers), area=args.area,
                          area_dates=args.area_dates)  # fmt: skip
    settings = Settings.from_env()
    result = compare_tiles(cfg, settings, progress=_progress(args))
    print(json.dumps(result.to_dict(), default=str) if args.json else format_tiles(result))
    sys.stdout.flush()
    if not args.no_record:  # after printing: a failed store never takes the result with it
        n = record_tiles(result, settings)
        if not args.json:
            areas = f" and {len(result.areas)} to area_benchmarks" if result.areas else ""
            print(f"{n} row(s) of run {result.run_id} -> {settings.results_db} "
                  f"(table tile_benchmarks){areas}")
    return 0
