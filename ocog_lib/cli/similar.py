"""`ocog similar` (find places like a point) and `ocog bench similar` (search at scale)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ocog_lib.cli import types as T
from ocog_lib.settings import Settings

_QUERY = ("ocog_lib.embed.similar", "SimilarQuery")
_BENCH = ("ocog_lib.bench.similar", "SimilarBenchConfig")


def register_similar(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "similar", help="find places like a point: the most similar H3 cells",
        description="The patch whose centre is nearest the point (its H3 cell), then the k "
        "cells whose embeddings are most similar to it (cosine), with scores, labels, "
        "lon/lat and distance. Searched in the set's HNSW index (beside the results file; "
        "rebuilt or extended when the embeddings changed), or exactly in DuckDB (--exact, "
        "and always with --within-km). With --by hash: the k patches of the compressed "
        "archive whose hash codes are nearest in Hamming distance (score 1 - d/K).",
    )
    p.add_argument("--lon", type=float, required=True, help="longitude, degrees")
    p.add_argument("--lat", type=float, required=True, help="latitude, degrees")
    p.add_argument("--k", type=int, default=T.default(*_QUERY, "k"),
                   help=f"cells to return, 1..{T.constant('ocog_lib.embed.similar', 'MAX_K')}")
    p.add_argument("--time", default=None,
                   help="the query patch's time: an ISO date (that day) or datetime, UTC "
                   "(default: any; results span every time)")  # fmt: skip
    p.add_argument("--within-km", type=float, default=None,
                   help="only results within this distance of the point (exact search)")
    p.add_argument("--dataset", default=None,
                   help="dataset (default: the one whose patches cover the point)")
    p.add_argument("--model", default=None, help="model_id (default: the dataset's newest)")
    p.add_argument("--by", choices=("embedding", "hash"), default="embedding",
                   help="embedding: cosine over the encoder's vectors (`ocog embed`); hash: "
                   "Hamming distance over the compressed archive's hash codes (`ocog "
                   "compress`), exact, no bitstream decoded (--model is then a codec_id)")
    p.add_argument("--exact", action="store_true", help="exact search in DuckDB")
    p.add_argument("--refuse-stale", action="store_true",
                   help="fail instead of rebuilding an index older than its embeddings")
    p.add_argument("--db", type=Path, default=None,
                   help="results file (default: $OCOG_DUCKDB, else $OCOG_DATA_DIR/ocog.duckdb)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON object")
    out.add_argument("--geojson", action="store_true",
                     help="print a GeoJSON FeatureCollection: the query's H3 cell and the "
                     "matches as hexagons (what the map page of `ocog serve` draws)")
    p.set_defaults(func=_cmd_similar)


def _cmd_similar(args: argparse.Namespace) -> int:
    from ocog_lib.embed.similar import (
        SimilarQuery,
        dataset_classes,
        find_similar,
        format_similar,
        name_labels,
    )

    settings = Settings.from_env()
    query = SimilarQuery(lon=args.lon, lat=args.lat, k=args.k, time=args.time,
                         within_km=args.within_km, dataset=args.dataset, model_id=args.model,
                         exact=args.exact)  # fmt: skip
    db = args.db or settings.results_db
    if args.by == "hash":
        from ocog_lib.compress.similar import find_similar_by_hash

        result = find_similar_by_hash(db, query)
    else:
        result = find_similar(db, query, on_stale="refuse" if args.refuse_stale else "rebuild")
    result = name_labels(result, dataset_classes(settings.data_dir, result.dataset))
    if args.geojson:
        from ocog_lib.embed.cellshapes import similar_geojson

        print(json.dumps(similar_geojson(result), default=str))
    elif args.json:
        print(json.dumps(result.to_dict(), default=str))
    else:
        print(format_similar(result))
    return 0


def register_bench_similar(sub: argparse._SubParsersAction) -> None:
    """`bench similar`: unset flags keep SimilarBenchConfig's values."""
    d = lambda key: T.default(*_BENCH, key)  # noqa: E731
    b = sub.add_parser(
        "similar", help="vector search at scale: usearch HNSW vs DuckDB exact",
        description="Synthetic unit vectors at each size: build time, index bytes, memory "
        "(RSS delta), one-query latency p50/p95 and recall@10 against exact ground truth "
        "(blocked numpy matmul), for usearch HNSW (expansion tuned up to the target recall) "
        "and DuckDB's exact array_cosine_similarity. Rows go to DuckDB's similar_benchmarks.",
    )
    b.add_argument("--sizes", type=T.list_of(T.count), default=d("sizes"),
                   help="comma-separated vector counts, e.g. 1e5,1e6,1e7 (default: "
                   f"{','.join(f'{n:.0e}'.replace('+0', '') for n in d('sizes'))})")
    b.add_argument("--dim", type=T.positive_int, default=d("dim"), help="vector dimension")
    b.add_argument("--queries", type=T.positive_int, default=d("queries"),
                   help="query sample for recall and HNSW latency")
    b.add_argument("--exact-queries", type=T.positive_int, default=d("exact_queries"),
                   help="queries timed for the exact methods (each scans every vector)")
    b.add_argument("--connectivity", type=T.int_range(2, 4096), default=d("connectivity"),
                   help="HNSW links per node (M)")
    b.add_argument("--expansion-add", type=T.int_range(2, 4096), default=d("expansion_add"),
                   help="HNSW expansion while building (ef_construction)")
    b.add_argument("--target-recall", type=T.float_range(0.01, 1.0),
                   default=d("target_recall"), help="expansion_search grows until this recall")
    methods = ", ".join(T.constant("ocog_lib.bench.similar", "METHODS"))
    b.add_argument("--methods", type=T.name_list, default=d("methods"),
                   help=f"comma-separated, of {methods}")
    b.add_argument("--threads", type=T.non_negative_int, default=d("threads"),
                   help="HNSW build threads; 0 = the usable cores")
    b.add_argument("--seed", type=T.non_negative_int, default=d("seed"), help="vector seed")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.add_argument("--no-record", action="store_true", help="do not append to DuckDB")
    b.set_defaults(func=_cmd_bench_similar)


def _cmd_bench_similar(args: argparse.Namespace) -> int:
    from ocog_lib.bench.similar import (
        SimilarBenchConfig,
        bench_similar,
        format_similar_bench,
        record_similar,
    )

    cfg = SimilarBenchConfig(sizes=tuple(args.sizes), dim=args.dim, queries=args.queries,
                             exact_queries=args.exact_queries, connectivity=args.connectivity,
                             expansion_add=args.expansion_add, target_recall=args.target_recall,
                             methods=tuple(args.methods), threads=args.threads,
                             seed=args.seed)  # fmt: skip
    settings = Settings.from_env()

    def progress(msg: str) -> None:
        if not args.json:
            print(f"  {msg}", file=sys.stderr, flush=True)

    result = bench_similar(cfg, progress=progress)
    print(json.dumps(result.to_dict(), default=str) if args.json
          else format_similar_bench(result))  # fmt: skip
    sys.stdout.flush()
    if not args.no_record:  # after printing: a failed store never takes the result with it
        n = record_similar(result, settings)
        if not args.json:
            print(f"{n} row(s) of run {result.run_id} -> {settings.results_db} "
                  "(table similar_benchmarks)")
    return 0
