"""`ocog bench similar`: vector search at scale, HNSW against exact, on synthetic vectors.

Per size n: n random unit vectors of `dim` (seeded; the same distribution as an encoder's
L2-normalised output, and the hardest case for an index: no clusters), and `queries`
fresh unit vectors. Ground truth is exact: a blocked numpy matmul over the whole set per
query sample. Methods:

- `hnsw`: usearch HNSW (`embed.index.new_index`, the index `ocog similar` uses), built on
  every usable core; expansion_search is tuned upwards (k, 16, 32, ... 2048) until
  recall@k on the query sample reaches `target_recall`; that setting's one-query latency
  (one thread) is reported, with the recall curve in `config`.
- `duckdb`: the store's exact search, array_cosine_similarity over FLOAT[] cast to
  FLOAT[dim] (`embed.similar`), in a DuckDB file of its own; `exact_queries` queries.
- `numpy`: a single-query brute-force matmul + argpartition, the in-memory floor.

Memory is the process's RSS delta over the build (load, for duckdb), with usearch's own
`memory_usage` beside it; index bytes are the saved index's (or the DuckDB file's) size.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ocog_lib.embed.index import HnswConfig, new_index
from ocog_lib.errors import InputError
from ocog_lib.host import usable_cores
from ocog_lib.settings import Settings

METHODS = ("hnsw", "duckdb", "numpy")
EF_STEPS = (16, 32, 64, 128, 256, 512, 1024, 2048)
_CHUNK = 1_000_000  # vectors generated, inserted and scanned per step


@dataclass(frozen=True)
class SimilarBenchConfig:
    sizes: tuple[int, ...] = (100_000, 1_000_000, 10_000_000)
    dim: int = 16
    queries: int = 200  # recall sample (ground truth by matmul) and HNSW latency sample
    exact_queries: int = 20  # DuckDB / numpy exact: each query scans every vector
    k: int = 10
    connectivity: int = 16
    expansion_add: int = 64
    target_recall: float = 0.95
    methods: tuple[str, ...] = ("hnsw", "duckdb")
    threads: int = 0  # build threads; 0: the usable cores
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.sizes or any(n < 1 for n in self.sizes):
            raise InputError(f"sizes {self.sizes}", "give one or more positive sizes")
        for name in ("dim", "queries", "exact_queries", "k"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} {getattr(self, name)}", "must be at least 1")
        if any(self.k > n for n in self.sizes):
            raise InputError(f"k {self.k}", f"must not exceed the smallest size {min(self.sizes)}")
        if not 0 < self.target_recall <= 1:
            raise InputError(f"target_recall {self.target_recall}", "must be in (0, 1]")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise InputError(f"methods {self.methods}", f"choose from {METHODS}")
        HnswConfig(self.connectivity, self.expansion_add, max(self.k, 2))  # checks the two


@dataclass(frozen=True)
class SimilarBenchRow:
    method: str
    n: int
    dim: int
    queries: int  # queries timed
    k: int
    build_s: float | None
    index_bytes: int | None
    rss_delta_mb: float | None
    p50_ms: float
    p95_ms: float
    recall_at_10: float  # recall@k (k = 10 by default) against exact ground truth
    connectivity: int | None = None
    expansion_add: int | None = None
    expansion_search: int | None = None
    threads: int | None = None
    extra: dict = field(default_factory=dict)  # recall curve, usearch memory_usage, ...


@dataclass(frozen=True)
class SimilarBenchResult:
    run_id: str
    config: dict
    rows: tuple[SimilarBenchRow, ...]

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "config": self.config,
                "rows": [asdict(r) for r in self.rows]}  # fmt: skip


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    """n random unit vectors (float32), made in chunks so the float64 draw stays small."""
    out = np.empty((n, dim), dtype=np.float32)
    rng = np.random.default_rng(seed)
    for lo in range(0, n, _CHUNK):
        part = rng.standard_normal((min(_CHUNK, n - lo), dim), dtype=np.float32)
        out[lo:lo + len(part)] = part / np.linalg.norm(part, axis=1, keepdims=True)
    return out


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """(q, k) row numbers of each query's k largest inner products, best first: blocked
    matmul, each block's top k merged into the running top k."""
    best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), k), dtype=np.int64)
    for lo in range(0, len(vectors), _CHUNK):
        scores = queries @ vectors[lo:lo + _CHUNK].T
        kk = min(k, scores.shape[1])
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        s = np.concatenate([best_s, np.take_along_axis(scores, part, axis=1)], axis=1)
        i = np.concatenate([best_i, part + lo], axis=1)
        keep = np.argsort(-s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(s, keep, axis=1), np.take_along_axis(i, keep, axis=1)
    return best_i


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each query's true top k among its k found."""
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def bench_similar(cfg: SimilarBenchConfig, *,
                  progress: Callable[[str], None] = lambda _m: None) -> SimilarBenchResult:
    """Every method at every size (see the module); sizes one after another, memory freed."""
    rows: list[SimilarBenchRow] = []
    for n in cfg.sizes:
        vectors = unit_vectors(n, cfg.dim, cfg.seed)
        queries = unit_vectors(cfg.queries, cfg.dim, cfg.seed + 1_000_003)
        t0 = time.perf_counter()
        truth = exact_top_k(vectors, queries, cfg.k)
        progress(f"n={n}: ground truth for {cfg.queries} queries in "
                 f"{time.perf_counter() - t0:.1f} s")  # fmt: skip
        for method in cfg.methods:
            run = {"hnsw": _bench_hnsw, "duckdb": _bench_duckdb, "numpy": _bench_numpy}[method]
            rows.append(run(cfg, vectors, queries, truth))
            r = rows[-1]
            progress(f"n={n} {method}: p50 {r.p50_ms:.3f} ms, recall@{cfg.k} "
                     f"{r.recall_at_10:.3f}" + (f", build {r.build_s:.1f} s" if r.build_s
                                                else ""))  # fmt: skip
        del vectors
    return SimilarBenchResult(uuid.uuid4().hex[:12], asdict(cfg), tuple(rows))


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _latencies(search: Callable[[np.ndarray], object], queries: np.ndarray) -> tuple[float, float]:
    """p50, p95 in ms of one query at a time, after one untimed warm-up query."""
    search(queries[0])
    times = []
    for q in queries:
        t0 = time.perf_counter()
        search(q)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def _bench_hnsw(cfg: SimilarBenchConfig, vectors: np.ndarray, queries: np.ndarray,
                truth: np.ndarray) -> SimilarBenchRow:  # fmt: skip
    threads = cfg.threads or usable_cores()
    hnsw = HnswConfig(cfg.connectivity, cfg.expansion_add, max(cfg.k, 16), threads=threads)
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    index = new_index(cfg.dim, hnsw)
    for lo in range(0, len(vectors), _CHUNK):
        part = vectors[lo:lo + _CHUNK]
        index.add(np.arange(lo, lo + len(part), dtype=np.uint64), part, threads=threads)
    build_s = time.perf_counter() - t0
    rss = _rss_mb() - rss0
    curve: dict[int, float] = {}
    for ef in [cfg.k] + [e for e in EF_STEPS if e > cfg.k]:
        index.expansion_search = ef
        found = index.search(queries, cfg.k, threads=threads).keys
        curve[ef] = recall(np.asarray(found, dtype=np.int64), truth)
        if curve[ef] >= cfg.target_recall:
            break
    ef = list(curve)[-1]  # the first to reach the target, else the widest tried
    index.expansion_search = ef
    p50, p95 = _latencies(lambda q: index.search(q, cfg.k, threads=1), queries)
    return SimilarBenchRow(
        "hnsw", len(vectors), cfg.dim, len(queries), cfg.k, build_s,
        int(index.serialized_length), rss, p50, p95, curve[ef], cfg.connectivity,
        cfg.expansion_add, ef, threads,
        {"recall_curve": {str(e): round(r, 4) for e, r in curve.items()},
         "memory_usage_bytes": int(index.memory_usage), "dtype": hnsw.dtype,
         "reached_target": curve[ef] >= cfg.target_recall})  # fmt: skip


def _bench_duckdb(cfg: SimilarBenchConfig, vectors: np.ndarray, queries: np.ndarray,
                  truth: np.ndarray) -> SimilarBenchRow:  # fmt: skip
    import duckdb

    sample = queries[: cfg.exact_queries]
    with tempfile.TemporaryDirectory(prefix="ocog-similar-") as tmp:
        path = Path(tmp) / "vectors.duckdb"
        rss0 = _rss_mb()
        t0 = time.perf_counter()
        con = duckdb.connect(str(path))
        try:
            _load_duckdb(con, vectors)
            build_s, rss = time.perf_counter() - t0, _rss_mb() - rss0
            d = cfg.dim
            sql = (f"SELECT idx FROM v ORDER BY array_cosine_similarity(vector::FLOAT[{d}], "
                   f"?::FLOAT[{d}]) DESC LIMIT {cfg.k}")  # fmt: skip
            found = np.array([[i for (i,) in con.execute(sql, [q.tolist()]).fetchall()]
                              for q in sample])  # fmt: skip
            p50, p95 = _latencies(lambda q: con.execute(sql, [q.tolist()]).fetchall(), sample)
            threads = int(con.execute("SELECT current_setting('threads')").fetchone()[0])
        finally:
            con.close()
        size = path.stat().st_size
    return SimilarBenchRow("duckdb", len(vectors), cfg.dim, len(sample), cfg.k, build_s, size,
                           rss, p50, p95, recall(found, truth[: len(sample)]),
                           threads=threads, extra={"layout": "FLOAT[] cast to FLOAT[dim]"})


def _load_duckdb(con, vectors: np.ndarray) -> None:
    """The store's layout (idx, FLOAT[] vector), loaded in chunks, then checkpointed."""
    con.execute("CREATE TABLE v (idx BIGINT, vector FLOAT[])")
    dim = vectors.shape[1]
    values = ", ".join(f"c{j}" for j in range(dim))
    for lo in range(0, len(vectors), _CHUNK):
        part = np.ascontiguousarray(vectors[lo:lo + _CHUNK].T)
        scan = {"idx": np.arange(lo, lo + part.shape[1], dtype=np.int64)}
        scan |= {f"c{j}": part[j] for j in range(dim)}
        con.register("chunk", scan)
        con.execute(f"INSERT INTO v SELECT idx, list_value({values}) FROM chunk")
        con.unregister("chunk")
    con.execute("CHECKPOINT")


def _bench_numpy(cfg: SimilarBenchConfig, vectors: np.ndarray, queries: np.ndarray,
                 truth: np.ndarray) -> SimilarBenchRow:  # fmt: skip
    sample = queries[: cfg.exact_queries]
    k = cfg.k

    def search(q: np.ndarray) -> np.ndarray:
        scores = vectors @ q
        top = np.argpartition(-scores, k - 1)[:k]
        return top[np.argsort(-scores[top], kind="stable")]

    found = np.array([search(q) for q in sample])
    p50, p95 = _latencies(search, sample)
    return SimilarBenchRow("numpy", len(vectors), cfg.dim, len(sample), k, 0.0,
                           int(vectors.nbytes), 0.0, p50, p95, recall(found, truth[: len(sample)]),
                           threads=1, extra={"note": "matmul over the vectors in memory"})


# --- output ------------------------------------------------------------------------------

_COLUMNS = ("method", "n", "dim", "M", "ef_add", "ef", "build_s", "index_MB", "rss_MB",
            "p50_ms", "p95_ms", "recall@10", "queries")  # fmt: skip


def format_similar_bench(result: SimilarBenchResult) -> str:
    from ocog_lib.results import format_table

    def mb(x: float | None) -> float | None:
        return None if x is None else round(x / 2**20, 1)

    rows = [[r.method, r.n, r.dim, r.connectivity, r.expansion_add, r.expansion_search,
             None if r.build_s is None else round(r.build_s, 2), mb(r.index_bytes),
             None if r.rss_delta_mb is None else round(r.rss_delta_mb, 1), round(r.p50_ms, 3),
             round(r.p95_ms, 3), round(r.recall_at_10, 4), r.queries]
            for r in result.rows]  # fmt: skip
    k = result.config.get("k", 10)
    head = f"run {result.run_id}: recall@{k} against exact ground truth; one query at a time"
    return head + "\n" + format_table(list(_COLUMNS), rows)


def similar_rows_for_db(result: SimilarBenchResult, host: dict,
                        git_sha: str | None) -> list[dict]:  # fmt: skip
    return [{"run_id": result.run_id, "git_sha": git_sha, "host": host, "method": r.method,
             "n": r.n, "dim": r.dim, "queries": r.queries, "k": r.k,
             "connectivity": r.connectivity, "expansion_add": r.expansion_add,
             "expansion_search": r.expansion_search, "build_s": r.build_s,
             "index_bytes": r.index_bytes, "rss_delta_mb": r.rss_delta_mb, "p50_ms": r.p50_ms,
             "p95_ms": r.p95_ms, "recall_at_10": r.recall_at_10, "threads": r.threads,
             "config": {**result.config, **r.extra}}
            for r in result.rows]  # fmt: skip


def record_similar(result: SimilarBenchResult, settings: Settings) -> int:
    """Append the rows to DuckDB's `similar_benchmarks`, with this host and commit."""
    from ocog_lib import results
    from ocog_lib.host import git_sha, host_facts

    return results.write_rows(settings.results_db, "similar_benchmarks",
                              similar_rows_for_db(result, host_facts(), git_sha()))
