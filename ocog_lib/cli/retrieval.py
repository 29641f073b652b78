"""`ocog bench retrieval`: hash codes against float embeddings, at scale (synthetic codes
and vectors) and in quality (trained models' held-out patches); bench/retrieval.py.

Unset flags keep RetrievalBenchConfig's values (and bench_retrieval_quality's). Without
--codec-model the quality part takes the dataset's newest codec of each bit length and
its newest encoder, and is skipped, saying how to make them, when there are none.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ocog_lib.cli import types as T
from ocog_lib.settings import Settings

_MODULE = "ocog_lib.bench.retrieval"
_BENCH = (_MODULE, "RetrievalBenchConfig")
_QUALITY = (_MODULE, "bench_retrieval_quality")


def _bits(text: str) -> int:
    value = T.positive_int(text)
    if value % 8:
        raise argparse.ArgumentTypeError(f"{value} is not a multiple of 8")
    return value


def _counts(values: tuple[int, ...]) -> str:
    return ",".join(f"{n:.0e}".replace("+0", "") if n >= 10_000 else str(n) for n in values)


def register_bench_retrieval(sub: argparse._SubParsersAction) -> None:
    """`bench retrieval`."""
    d = lambda key: T.default(*_BENCH, key)  # noqa: E731
    b = sub.add_parser(
        "retrieval", help="hash codes vs float embeddings: search at scale and quality",
        description="Scale: synthetic clustered codes and vectors at each size, one-query "
        "latency p50/p95, build time, index bytes and recall@k for exhaustive Hamming "
        "search, multi-index hashing (exact), numpy float search and optionally usearch "
        "HNSW. Quality: on a trained codec's held-out patches, precision@k and mAP@k of its "
        "hash codes (from the bitstreams), the embed encoder's float vectors, SimHash of "
        "decoded pixels' embeddings and random codes, with encode time per item and the "
        "goal (codes within 0.05 mAP of float at >= 16x fewer bytes). Rows go to DuckDB's "
        "retrieval_benchmarks.",
    )
    b.add_argument("--sizes", type=T.list_of(T.count), default=d("sizes"),
                   help=f"comma-separated item counts, e.g. 1e5,1e6 (default: "
                   f"{_counts(d('sizes'))})")  # fmt: skip
    b.add_argument("--bits", type=T.list_of(_bits), default=d("bits"),
                   help=f"comma-separated code lengths, multiples of 8 (default: "
                   f"{_counts(d('bits'))})")  # fmt: skip
    b.add_argument("--queries", type=T.positive_int, default=d("queries"),
                   help="queries per size (fresh draws, one at a time)")
    b.add_argument("--scan-queries", type=T.positive_int, default=d("scan_queries"),
                   help="queries the exhaustive searches time above "
                   f"{_counts((T.constant(_MODULE, 'SCAN_ALL_UP_TO'),))} items")  # fmt: skip
    b.add_argument("--k", type=T.positive_int, default=d("k"), help="neighbours per query")
    b.add_argument("--dim", type=T.at_least(2), default=d("dim"), help="float vector dimension")
    b.add_argument("--clusters", type=T.positive_int, default=d("clusters"),
                   help="cluster centres of the synthetic codes and vectors")
    b.add_argument("--flip", type=T.float_range(0.0, 0.49), default=d("flip"),
                   help="each code bit flipped from its centre with this probability (the "
                   "vectors' noise matches it)")  # fmt: skip
    b.add_argument("--substrings", type=T.non_negative_int, default=d("substrings"),
                   help="multi-index hashing's substrings m; 0 = round(bits / log2 n)")
    b.add_argument("--hnsw-expansion", type=T.int_range(2, 4096), default=d("hnsw_expansion"),
                   help="float_hnsw's expansion_search")
    methods = ", ".join(T.constant(_MODULE, "METHODS"))
    b.add_argument("--methods", type=T.name_list, default=d("methods"),
                   help=f"comma-separated scale methods, of {methods} (default: "
                   f"{','.join(d('methods'))})")  # fmt: skip
    b.add_argument("--seed", type=T.non_negative_int, default=d("seed"), help="data seed")
    _quality_flags(b)
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.add_argument("--no-record", action="store_true", help="do not append to DuckDB")
    b.set_defaults(func=_cmd_bench_retrieval)


def _quality_flags(b: argparse.ArgumentParser) -> None:
    b.add_argument("--codec-model", type=Path, action="append", default=None, metavar="PATH",
                   help="a codec model file (repeatable, one per bit length; default: the "
                   "dataset's newest of each bit length)")  # fmt: skip
    b.add_argument("--embed-model", type=Path, default=None, metavar="PATH",
                   help="the embed encoder (default: the dataset's newest)")
    b.add_argument("--dataset", default=T.default("ocog_lib.compress.config", "CompressConfig",
                                                  "dataset"),
                   help="dataset whose newest models the quality part takes")  # fmt: skip
    b.add_argument("--device", default=T.default(*_QUALITY, "device"),
                   help="torch device of the quality part (auto, cpu, cuda)")
    part = b.add_mutually_exclusive_group()
    part.add_argument("--no-scale", action="store_true", help="only the quality part")
    part.add_argument("--no-quality", action="store_true", help="only the scale part")


def _quality_models(args: argparse.Namespace, settings: Settings
                    ) -> tuple[list[Path], Path | None, str | None]:  # fmt: skip
    """(codec models, encoder, why the quality part is skipped or None)."""
    from ocog_lib.bench.retrieval import newest_models

    codecs, encoder = list(args.codec_model or []), args.embed_model
    if not codecs or encoder is None:
        found_codecs, found_encoder = newest_models(settings, args.dataset)
        codecs, encoder = codecs or found_codecs, encoder or found_encoder
    missing = [what for what, have in (("codec", codecs), ("embed encoder", encoder)) if not have]
    if not missing:
        return codecs, encoder, None
    return [], None, (f"quality part skipped: no {' and no '.join(missing)} model for dataset "
                      f"{args.dataset!r}; make them with `ocog compress --dataset "
                      f"{args.dataset}` and `ocog embed --dataset {args.dataset}`, or pass "
                      "--codec-model / --embed-model")  # fmt: skip


def _cmd_bench_retrieval(args: argparse.Namespace) -> int:
    from ocog_lib.bench.retrieval import (
        RetrievalBench,
        RetrievalBenchConfig,
        bench_retrieval_quality,
        bench_retrieval_scale,
        format_retrieval_bench,
        new_run_id,
        record_retrieval,
        with_rows,
    )

    cfg = RetrievalBenchConfig(sizes=tuple(args.sizes), bits=tuple(args.bits),
                               queries=args.queries, scan_queries=args.scan_queries, k=args.k,
                               dim=args.dim, clusters=args.clusters, flip=args.flip,
                               substrings=args.substrings, hnsw_expansion=args.hnsw_expansion,
                               methods=tuple(args.methods), seed=args.seed)  # fmt: skip
    settings = Settings.from_env()

    def progress(msg: str) -> None:
        if not args.json:
            print(f"  {msg}", file=sys.stderr, flush=True)

    result = (RetrievalBench(new_run_id(), {"k": cfg.k}, ()) if args.no_scale
              else bench_retrieval_scale(cfg, progress))  # fmt: skip
    if not args.no_quality:
        codecs, encoder, skipped = _quality_models(args, settings)
        if skipped:
            print(skipped, file=sys.stderr, flush=True)
            result = with_rows(result, (), quality={"skipped": skipped})
        else:
            progress(f"quality: {len(codecs)} codec model(s) and encoder {encoder}")
            rows = bench_retrieval_quality(codecs, encoder, settings, cfg.k, device=args.device)
            result = with_rows(result, rows, quality={
                "codec_models": [str(p) for p in codecs], "embed_model": str(encoder),
                "k": cfg.k, "device": args.device})  # fmt: skip
    print(json.dumps(result.to_dict(), default=str) if args.json
          else format_retrieval_bench(result))  # fmt: skip
    sys.stdout.flush()
    if not args.no_record:  # after printing: a failed store never takes the result with it
        n = record_retrieval(result, settings)
        if not args.json:
            print(f"{n} row(s) of run {result.run_id} -> {settings.results_db} "
                  "(table retrieval_benchmarks)")
    return 0
