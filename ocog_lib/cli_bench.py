"""`ocog bench ...`: the benchmark commands (same library calls as the assets)."""

from __future__ import annotations

import argparse
import json
import sys

from ocog_lib.settings import Settings


def register_bench(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser(
        "bench",
        help="measure streaming throughput",
        description="Throughput benchmarks: one engine configuration, or ocog against the "
        "OCOG toolkit's loader and the decode limit in one run.",
    )
    sub = bench.add_subparsers(dest="bench_cmd", required=True, metavar="{stream,compare}")

    s = sub.add_parser(
        "stream",
        help="one configuration of the ocog engine",
        description="Measure one configuration of the ocog engine.",
    )
    _common(s)
    s.add_argument("--variant", default="default", help="COG variant (default: %(default)s)")
    s.add_argument("--sampler", default="random", choices=["random", "block", "grid"])
    s.add_argument("--patch-size", type=int, default=256)
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--workers", type=int, default=0, help="processes; 0 = threads in-process")
    s.add_argument("--threads", type=int, default=0, help="decode threads (0 = all cores)")
    s.add_argument("--prefetch", type=int, help="batches assembled ahead (default: the engine's)")
    s.add_argument("--cache-mb", type=float, default=128.0)
    s.add_argument(
        "--patches-per-tile",
        type=int,
        default=0,
        help="windows per tile visit; 0 = auto (1 local, link-sized for remote sources)",
    )
    s.add_argument("--shuffle-tiles", type=int, default=32)
    s.add_argument("--bands", default=None, help="comma-separated 0-based band indices")
    s.add_argument("--dtype", default=None, help="output dtype, e.g. float32")
    s.add_argument("--length", type=int, default=0, help="windows (0 = enough for --seconds)")
    s.add_argument("--seconds", type=float, default=5.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--step-ms",
        type=float,
        default=0.0,
        help="also measure data-wait with a consumer taking this long per batch",
    )
    s.set_defaults(func=_cmd_stream)

    c = sub.add_parser(
        "compare",
        help="ocog vs the reference loader vs the decode limit",
        description="One run, same files, interleaved repeats, medians.",
    )
    _common(c)
    c.add_argument("--quick", action="store_true", help="one short repeat (< 60 s)")
    c.add_argument("--repeats", type=int, default=None)
    c.add_argument("--seconds", type=float, default=None, help="steady-state seconds per run")
    c.add_argument("--cache-mb", type=float, default=None)
    c.add_argument("--variants", default=None, help="comma-separated variant names")
    c.add_argument(
        "--hdf5",
        action="store_true",
        help="add HDF5 rows: the same patches packaged (gzip, lzf, none), read by a "
        "DataLoader with one worker per core (with --remote: 16 workers, by byte ranges "
        "from the same endpoint through the same shaper)",
    )
    c.add_argument(
        "--remote",
        action="store_true",
        help="read from S3 (the embedded endpoint unless AWS_ENDPOINT_URL_S3 is set) "
        "through the WAN shaper",
    )
    c.add_argument("--rtt-ms", type=float, default=30.0, help="remote: per-request delay")
    c.add_argument(
        "--caps",
        default=None,
        help="remote: comma-separated bandwidth caps in MB/s (default 100,1000)",
    )
    c.set_defaults(func=_cmd_compare)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="sample")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-record", action="store_true", help="do not append to DuckDB")


def _record(result: dict, settings: Settings) -> None:
    from ocog_lib import results
    from ocog_lib.bench import result_rows_for_db
    from ocog_lib.host import git_sha, host_facts

    results.write_rows(
        settings.results_db,
        "stream_benchmarks",
        result_rows_for_db(result, host_facts(), git_sha()),
    )


def _cmd_stream(args: argparse.Namespace) -> int:
    import uuid

    from ocog_lib.bench import bench_files, format_rows, stream_once
    from ocog_lib.stream.dataset import StreamConfig

    settings = Settings.from_env()
    images, masks = bench_files(args.dataset, args.variant, settings)
    length = args.length or int(
        max(2000, 4000 * (args.seconds + 3)) // args.batch_size * args.batch_size
    )
    sc = StreamConfig(
        sampler=args.sampler,
        patch_size=args.patch_size,
        batch_size=args.batch_size,
        length=length,
        seed=args.seed,
        workers=args.workers,
        threads=args.threads,
        prefetch=args.prefetch or StreamConfig.prefetch,
        cache_mb=args.cache_mb,
        patches_per_tile=args.patches_per_tile,
        shuffle_tiles=args.shuffle_tiles,
        dtype=args.dtype,
        bands=tuple(int(b) for b in args.bands.split(",")) if args.bands else None,
    )
    row = stream_once(images, masks, sc, seconds=args.seconds)
    row.update(variant=args.variant, sampler=args.sampler, loader="ocog")
    if args.step_ms > 0:
        from ocog_lib.consumer import measure_data_wait
        from ocog_lib.stream.dataset import CogStream

        stream = CogStream(images, masks or None, sc)
        dw = measure_data_wait(
            stream.loader(),
            step_seconds=args.step_ms / 1000,
            n_steps=max(10, int(args.seconds * 1000 / args.step_ms)),
        )
        stream.close()
        row["data_wait_fraction"] = dw.data_wait_fraction
        row["config"]["step_ms"] = args.step_ms
    result = {
        "run_id": uuid.uuid4().hex[:12],
        "dataset": args.dataset,
        "storage": "local",
        "rows": [row],
    }
    if not args.no_record:
        _record(result, settings)
    if args.json:
        print(json.dumps(result, default=str))
    else:
        print(format_rows(result["rows"]))
        if "data_wait_fraction" in row:
            print(
                f"data-wait fraction at {args.step_ms:g} ms/step: {row['data_wait_fraction']:.3f}"
            )
    return 0


def _overrides(args: argparse.Namespace) -> dict:
    """Compare settings given on the command line (local and remote share them)."""
    out: dict = {"dataset": args.dataset}
    for name in ("repeats", "seconds", "cache_mb"):
        if getattr(args, name) is not None:
            out[name] = getattr(args, name)
    if args.variants:
        out["variants"] = tuple(args.variants.split(","))
    return out


def _progress(args: argparse.Namespace):
    def progress(msg: str) -> None:
        if not args.json:
            print(f"  {msg}", file=sys.stderr, flush=True)

    return progress


def _cmd_compare(args: argparse.Namespace) -> int:
    if args.remote:
        return _cmd_compare_remote(args)
    from dataclasses import replace

    from ocog_lib.bench import CompareConfig, compare, format_rows

    cfg = replace(CompareConfig.quick() if args.quick else CompareConfig(), **_overrides(args))
    settings = Settings.from_env()
    progress = _progress(args)
    result = compare(cfg, settings, progress=progress)
    if args.hdf5:
        from ocog_lib.hdf5.bench import add_hdf5_rows, hdf5_rows

        add_hdf5_rows(result, hdf5_rows(cfg, None, settings, progress))
    if not args.no_record:
        _record(result, settings)
    if args.json:
        print(json.dumps(result, default=str))
    else:
        print(
            f"dataset {result['dataset']}: {result['decoded_gib']:.2f} GiB decoded per variant, "
            f"cache budget {result['cache_mb']:.0f} MB for every loader"
        )
        print(format_rows(result["rows"]))
    return 0


def _cmd_compare_remote(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ocog_lib.bench import format_rows
    from ocog_lib.bench_remote import RemoteCompareConfig, check_remote_rows, compare_remote

    overrides = {**_overrides(args), "rtt_ms": args.rtt_ms}
    if args.hdf5:
        from ocog_lib.hdf5.bench import Hdf5BenchConfig

        overrides["hdf5"] = Hdf5BenchConfig().compressions
    if args.caps:
        overrides["caps_mb_s"] = tuple(float(c) for c in args.caps.split(","))
    cfg = replace(RemoteCompareConfig.quick() if args.quick else RemoteCompareConfig(), **overrides)
    settings = Settings.from_env()
    progress = _progress(args)

    result = compare_remote(cfg, settings, progress=progress)
    if not args.no_record:
        _record(result, settings)
    if args.json:
        print(json.dumps(result, default=str))
    else:
        print(
            f"dataset {result['dataset']} from S3 through the shaper: RTT {cfg.rtt_ms:g} ms, "
            f"caps {cfg.caps_mb_s} MB/s; the endpoint itself serves "
            f"{result['endpoint_mb_s']:.0f} MB/s unshaped"
        )
        for cap in cfg.caps_mb_s:
            rows = [r for r in result["rows"] if r["config"].get("cap_mb_s") == cap]
            print(f"\ncap {cap:g} MB/s")
            extra = ("wire_bytes_per_sample", "link_utilization", "layout_limit_sps")
            print(format_rows(rows, extra=extra))
    check_remote_rows(result)
    return 0
