"""`ocog bench retrieval`: hash codes against float embeddings, at scale and in quality.

Scale (rows of kind "scale", one per method, size n and, for codes, bit length K), on
synthetic data made to look like what a hash head and an encoder give, not like noise:
`clusters` centres (random K-bit codes; random unit vectors of `dim`), each item a centre
with every bit flipped with probability `flip` (codes), or the centre plus Gaussian
noise of sigma = tan(pi flip) / sqrt(dim - 1) per dimension, renormalised (vectors: an
angle of about pi flip to the centre, the angle at which SimHash flips a bit with
probability `flip`, so both sets are equally spread). Items are drawn uniformly over
the centres; queries are fresh draws of the same process, not database rows. Methods:

- `hamming_scan`: `compress.hamming.hamming_search`, exhaustive and exact. It is also
  the ground truth of the code methods. Above SCAN_ALL_UP_TO items it runs (and is
  timed) on the first `scan_queries` queries only; the row's config says so.
- `hamming_mih`: `compress.mih.MultiIndex`, exact multi-index hashing; recall is
  against the scan on the scan's queries, and `equals_scan` says whether its rows and
  distances were identical there (they must be: both are exact, ties by lower row).
- `float_exact`: one matrix-vector product and a top-k per query over float32 unit
  vectors (4 dim bytes an item; 64 at dim 16), the float embeddings' exact baseline at
  the same n; its ground truth is a blocked matmul (`bench.similar.exact_top_k`), and
  it is timed on as many queries as the scan.
- `float_hnsw` (optional): usearch HNSW (`embed.index.new_index`) at a fixed
  expansion_search, recall against the blocked matmul.

Latency is one query at a time (p50/p95 ms, after one untimed warm-up); build_s is the
index build (0 for the scans); index_bytes what the method holds in memory (codes or
vectors, plus MIH's tables; HNSW's serialized length). One size is held at a time, codes
first, then vectors: at 1e7, 80 MB of 64-bit codes and MIH's tables, then 640 MB of
16-d vectors.

Quality (rows of kind "quality"), on a trained codec's held-out patches
(`compress.quality.held_out_patches`, labels the masks' majority classes), precision@k
and mAP@k of exact search (`embed.quality.retrieval_scores`; Hamming for codes,
`compress.quality.hash_scores`), for:

- `hash`: the head's codes from the bitstreams (entropy decoding only);
- `float_embedding`: the embed encoder's vectors of the same patches' pixels;
- `decoded_pixel_hash`: every bitstream fully decoded to pixels, those embedded by the
  encoder, then SimHash (seeded Gaussian hyperplanes, `simhash`) to K bits: what hashing
  costs without codes in the compressed domain;
- `random_codes`: K fair random bits, the floor.

encode_ms_per_item is the time from what an archive holds to the searchable item: the
bitstream for codes (entropy decoding and the head for `hash`; decoding, encoder and
projection for `decoded_pixel_hash`), raw pixels through the encoder for the float
embedding. The goal (issue 18): a code within GOAL_MAP_GAP of the float embedding's
mAP@k at GOAL_BYTES_RATIO times fewer bytes an item; `goal_met` is in each code row's
config (retrieval_benchmarks has no column for it).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ocog_lib.compress.hamming import hamming_search
from ocog_lib.compress.mih import MultiIndex
from ocog_lib.data.lineage import model_hash
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings

HASH_METHODS = ("hamming_scan", "hamming_mih")
FLOAT_METHODS = ("float_exact", "float_hnsw")
METHODS = HASH_METHODS + FLOAT_METHODS
QUALITY_METHODS = ("hash", "float_embedding", "decoded_pixel_hash", "random_codes")
CODE_METHODS = ("hash", "decoded_pixel_hash", "random_codes")
SCAN_ALL_UP_TO = 1_000_000  # the exhaustive methods time every query up to this n
GOAL_MAP_GAP = 0.05
GOAL_BYTES_RATIO = 16.0
_CHUNK = 1 << 18  # items generated at once
_QUERY_BLOCK = 32  # queries per blocked ground-truth matmul (32 x 1e6 floats: 128 MB)
ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class RetrievalBenchConfig:
    sizes: tuple[int, ...] = (100_000, 1_000_000, 10_000_000)
    bits: tuple[int, ...] = (32, 64)
    queries: int = 200
    scan_queries: int = 50  # exhaustive methods above SCAN_ALL_UP_TO items: queries timed
    k: int = 20
    dim: int = 16  # float vectors
    clusters: int = 1024
    flip: float = 0.1  # each code bit flipped from its centre with this probability
    substrings: int = 0  # MIH's m; 0: round(K / log2 n)
    hnsw_expansion: int = 64  # float_hnsw's expansion_search
    methods: tuple[str, ...] = ("hamming_scan", "hamming_mih", "float_exact")
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.sizes or any(n < 1 for n in self.sizes):
            raise InputError(f"sizes {self.sizes}", "give one or more positive sizes")
        if not self.bits or any(b < 8 or b % 8 for b in self.bits):
            raise InputError(f"bits {self.bits}", "give bit lengths that are multiples of 8")
        for name in ("queries", "scan_queries", "k", "clusters"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} {getattr(self, name)}", "must be at least 1")
        if self.k > min(self.sizes):
            raise InputError(f"k {self.k}", f"must not exceed the smallest size {min(self.sizes)}")
        if self.dim < 2:
            raise InputError(f"dim {self.dim}", "must be at least 2")
        if not 0 <= self.flip < 0.5:
            raise InputError(f"flip {self.flip}", "must be in [0, 0.5)")
        if self.substrings < 0 or not 2 <= self.hnsw_expansion <= 4096:
            raise InputError(f"substrings {self.substrings}, hnsw_expansion "
                             f"{self.hnsw_expansion}", "need substrings >= 0 (0: default) and "
                             "hnsw_expansion in 2..4096")  # fmt: skip
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise InputError(f"methods {self.methods}", f"choose from {', '.join(METHODS)}")

    @property
    def noise(self) -> float:
        """The float vectors' noise sigma per dimension (see the module)."""
        return float(np.tan(np.pi * self.flip) / np.sqrt(self.dim - 1))

    def scan_sample(self, n: int) -> int:
        """Queries the exhaustive methods run at n items."""
        return self.queries if n <= SCAN_ALL_UP_TO else min(self.queries, self.scan_queries)


@dataclass(frozen=True)
class RetrievalRow:
    kind: str  # "scale" or "quality"
    method: str
    k: int
    n: int | None = None  # database items
    bits: int | None = None  # code methods
    dim: int | None = None  # float methods
    queries: int | None = None  # queries timed (scale) or scored (quality)
    build_s: float | None = None
    index_bytes: int | None = None
    bytes_per_item: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    recall_at_k: float | None = None
    precision_at_k: float | None = None
    map_at_k: float | None = None
    encode_ms_per_item: float | None = None
    dataset: str | None = None
    extra: dict = field(default_factory=dict)  # into the row's config JSON
    content_hash: str | None = None  # quality: the codec model file's (data.lineage)


@dataclass(frozen=True)
class RetrievalBench:
    run_id: str
    config: dict
    rows: tuple[RetrievalRow, ...]

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "config": self.config,
                "rows": [asdict(r) for r in self.rows]}  # fmt: skip


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def with_rows(result: RetrievalBench, rows: Sequence[RetrievalRow], **config) -> RetrievalBench:
    """The same run with more rows (e.g. the quality part's) and config entries."""
    return replace(result, rows=result.rows + tuple(rows), config={**result.config, **config})


# --- synthetic data ----------------------------------------------------------------------


def clustered_codes(n: int, bits: int, cfg: RetrievalBenchConfig, stream: int) -> np.ndarray:
    """uint8 (n, bits/8) packed codes: a centre each (uniform over `clusters`, the centres
    seeded by cfg.seed alone), every bit flipped with probability `flip`. Streams draw
    independent items of the same centres (1: the database, 2: the queries)."""
    centres = np.random.default_rng([cfg.seed, bits]).integers(0, 2, (cfg.clusters, bits)) > 0
    rng = np.random.default_rng([cfg.seed, bits, stream])
    out = np.empty((n, bits // 8), dtype=np.uint8)
    for lo in range(0, n, _CHUNK):
        size = min(_CHUNK, n - lo)
        flips = rng.random((size, bits), dtype=np.float32) < cfg.flip
        out[lo : lo + size] = np.packbits(centres[rng.integers(0, cfg.clusters, size)] ^ flips,
                                          axis=1)  # fmt: skip
    return out


def clustered_vectors(n: int, cfg: RetrievalBenchConfig, stream: int) -> np.ndarray:
    """float32 (n, dim) unit vectors: a random unit centre each plus noise of `cfg.noise`
    per dimension, renormalised (streams as `clustered_codes`)."""
    centres = np.random.default_rng([cfg.seed, 0]).standard_normal((cfg.clusters, cfg.dim))
    centres = (centres / np.linalg.norm(centres, axis=1, keepdims=True)).astype(np.float32)
    rng = np.random.default_rng([cfg.seed, 0, stream])
    out = np.empty((n, cfg.dim), dtype=np.float32)
    for lo in range(0, n, _CHUNK):
        size = min(_CHUNK, n - lo)
        v = centres[rng.integers(0, cfg.clusters, size)]
        v = v + np.float32(cfg.noise) * rng.standard_normal((size, cfg.dim), dtype=np.float32)
        out[lo : lo + size] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


# --- scale -------------------------------------------------------------------------------


def _timed(search: Callable[[np.ndarray], object], queries: np.ndarray
           ) -> tuple[list, float, float]:  # fmt: skip
    """Each query's result, searched one at a time after one untimed warm-up, and the
    p50 and p95 ms."""
    search(queries[:1])
    out, times = [], []
    for i in range(len(queries)):
        t0 = time.perf_counter()
        out.append(search(queries[i : i + 1]))
        times.append((time.perf_counter() - t0) * 1e3)
    return out, float(np.percentile(times, 50)), float(np.percentile(times, 95))


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each query's true k among its k found."""
    from ocog_lib.bench.similar import recall as set_recall

    return set_recall(np.asarray(found), np.asarray(truth))


def bench_retrieval_scale(cfg: RetrievalBenchConfig, progress: ProgressFn | None = None
                          ) -> RetrievalBench:  # fmt: skip
    """Every method at every size and bit length (see the module), one size at a time."""
    progress = progress or (lambda _m: None)
    rows: list[RetrievalRow] = []
    for n in cfg.sizes:
        if any(m in HASH_METHODS for m in cfg.methods):
            for bits in cfg.bits:
                rows += _code_rows(cfg, n, bits, progress)
        if any(m in FLOAT_METHODS for m in cfg.methods):
            rows += _float_rows(cfg, n, progress)
    config = {**asdict(cfg), "noise": cfg.noise, "scan_all_up_to": SCAN_ALL_UP_TO}
    return RetrievalBench(new_run_id(), config, tuple(rows))


def _sample_note(cfg: RetrievalBenchConfig, n: int) -> dict:
    s = cfg.scan_sample(n)
    if s == cfg.queries:
        return {}
    return {"queries_subset": f"exhaustive search timed on the first {s} of {cfg.queries} "
                              f"queries (n > {SCAN_ALL_UP_TO:.0e})"}  # fmt: skip


def _code_rows(cfg: RetrievalBenchConfig, n: int, bits: int, progress: ProgressFn
               ) -> list[RetrievalRow]:  # fmt: skip
    """hamming_scan (always run: the ground truth) and hamming_mih at (n, bits)."""
    t0 = time.perf_counter()
    db = clustered_codes(n, bits, cfg, 1)
    q = clustered_codes(cfg.queries, bits, cfg, 2)
    progress(f"n={n} K={bits}: codes made in {time.perf_counter() - t0:.1f} s")
    s, note = cfg.scan_sample(n), _sample_note(cfg, n)
    found, p50, p95 = _timed(lambda x: hamming_search(x, db, cfg.k), q[:s])
    truth_i = np.concatenate([h.indices for h in found])
    truth_d = np.concatenate([h.distances for h in found])
    base = {"kind": "scale", "k": cfg.k, "n": n, "bits": bits}
    rows = []
    if "hamming_scan" in cfg.methods:
        rows.append(RetrievalRow(method="hamming_scan", queries=s, build_s=0.0,
                                 index_bytes=int(db.nbytes), bytes_per_item=bits / 8,
                                 p50_ms=p50, p95_ms=p95, recall_at_k=1.0,
                                 extra={**note, "median_kth_distance":
                                        float(np.median(truth_d[:, -1]))}, **base))  # fmt: skip
        progress(f"n={n} K={bits} hamming_scan: p50 {p50:.3f} ms")
    if "hamming_mih" in cfg.methods:
        rows.append(_mih_row(cfg, db, q, truth_i, truth_d, base))
        r = rows[-1]
        progress(f"n={n} K={bits} hamming_mih: p50 {r.p50_ms:.3f} ms, build {r.build_s:.1f} s, "
                 f"equals scan: {r.extra['equals_scan']}")  # fmt: skip
    return rows


def _mih_row(cfg: RetrievalBenchConfig, db: np.ndarray, q: np.ndarray, truth_i: np.ndarray,
             truth_d: np.ndarray, base: dict) -> RetrievalRow:  # fmt: skip
    t0 = time.perf_counter()
    index = MultiIndex.build(db, cfg.substrings or None)
    build_s = time.perf_counter() - t0
    found, p50, p95 = _timed(lambda x: index.search(x, cfg.k), q)
    idx = np.concatenate([h.indices for h in found])
    dist = np.concatenate([h.distances for h in found])
    s = len(truth_i)
    same = bool(np.array_equal(idx[:s], truth_i) and np.array_equal(dist[:s], truth_d))
    return RetrievalRow(method="hamming_mih", queries=len(q), build_s=build_s,
                        index_bytes=index.nbytes, bytes_per_item=index.nbytes / len(db),
                        p50_ms=p50, p95_ms=p95, recall_at_k=recall(idx[:s], truth_i),
                        extra={"substrings": index.m,
                               "substring_bits": [hi - lo for lo, hi in index.bounds],
                               "table_bytes": index.table_nbytes, "equals_scan": same,
                               "verified_queries": s}, **base)  # fmt: skip


def _float_rows(cfg: RetrievalBenchConfig, n: int, progress: ProgressFn) -> list[RetrievalRow]:
    """float_exact and float_hnsw at n, against the blocked matmul's top k."""
    from ocog_lib.bench.similar import exact_top_k

    t0 = time.perf_counter()
    vectors = clustered_vectors(n, cfg, 1)
    q = clustered_vectors(cfg.queries, cfg, 2)
    truth = np.concatenate([exact_top_k(vectors, q[i : i + _QUERY_BLOCK], cfg.k)
                            for i in range(0, len(q), _QUERY_BLOCK)])  # fmt: skip
    progress(f"n={n} dim={cfg.dim}: vectors and ground truth in {time.perf_counter() - t0:.1f} s")
    base = {"kind": "scale", "k": cfg.k, "n": n, "dim": cfg.dim}
    rows = []
    if "float_exact" in cfg.methods:
        rows.append(_float_exact_row(cfg, vectors, q, truth, base))
    if "float_hnsw" in cfg.methods:
        rows.append(_hnsw_row(cfg, vectors, q, truth, base))
    for r in rows:
        progress(f"n={n} {r.method}: p50 {r.p50_ms:.3f} ms, recall@{cfg.k} {r.recall_at_k:.3f}")
    return rows


def _float_exact_row(cfg: RetrievalBenchConfig, vectors: np.ndarray, q: np.ndarray,
                     truth: np.ndarray, base: dict) -> RetrievalRow:  # fmt: skip
    k, s = cfg.k, cfg.scan_sample(len(vectors))

    def search(x: np.ndarray) -> np.ndarray:
        scores = vectors @ x[0]
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        return top[np.argsort(-scores[top], kind="stable")]

    found, p50, p95 = _timed(search, q[:s])
    return RetrievalRow(method="float_exact", queries=s, build_s=0.0,
                        index_bytes=int(vectors.nbytes), bytes_per_item=4.0 * cfg.dim,
                        p50_ms=p50, p95_ms=p95, recall_at_k=recall(np.stack(found), truth[:s]),
                        extra=_sample_note(cfg, len(vectors)), **base)  # fmt: skip


def _hnsw_row(cfg: RetrievalBenchConfig, vectors: np.ndarray, q: np.ndarray, truth: np.ndarray,
              base: dict) -> RetrievalRow:  # fmt: skip
    from ocog_lib.embed.index import HnswConfig, new_index

    hnsw = HnswConfig(expansion_search=cfg.hnsw_expansion)
    threads = hnsw.build_threads()
    t0 = time.perf_counter()
    index = new_index(cfg.dim, hnsw)
    for lo in range(0, len(vectors), 1_000_000):
        part = vectors[lo : lo + 1_000_000]
        index.add(np.arange(lo, lo + len(part), dtype=np.uint64), part, threads=threads)
    build_s = time.perf_counter() - t0
    found, p50, p95 = _timed(lambda x: index.search(x[0], cfg.k, threads=1).keys, q)
    found = np.stack([np.asarray(f, dtype=np.int64) for f in found])
    return RetrievalRow(method="float_hnsw", queries=len(q), build_s=build_s,
                        index_bytes=int(index.serialized_length),
                        bytes_per_item=index.serialized_length / len(vectors), p50_ms=p50,
                        p95_ms=p95, recall_at_k=recall(found, truth),
                        extra={"connectivity": hnsw.connectivity,
                               "expansion_add": hnsw.expansion_add,
                               "expansion_search": hnsw.expansion_search,
                               "build_threads": threads}, **base)  # fmt: skip


# --- quality -----------------------------------------------------------------------------


def simhash(vectors: np.ndarray, bits: int, seed: int = 0) -> np.ndarray:
    """uint8 (n, bits/8) packed sign random projections (Charikar's SimHash): bit j is 1
    where the vector lies on the positive side of seeded Gaussian hyperplane j, so two
    vectors at angle theta differ in each bit with probability theta / pi."""
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim != 2 or bits < 8 or bits % 8:
        raise InputError(f"simhash of {v.shape} to {bits} bits",
                         "need (n, dim) vectors and bits a multiple of 8")  # fmt: skip
    planes = np.random.default_rng([seed, bits]).standard_normal((v.shape[1], bits))
    return np.packbits(v @ planes.astype(np.float32) > 0, axis=1)


def newest_models(settings: Settings, dataset: str) -> tuple[list[Path], Path | None]:
    """The dataset's newest codec model of each bit length (by file time, ascending bits),
    and its newest embed encoder (None when there is none)."""
    from ocog_lib.compress.train import load_codec, model_path
    from ocog_lib.embed.train import models_root

    def newest_first(folder: Path) -> list[Path]:
        return sorted(folder.glob("*.pt"), key=lambda p: p.stat().st_mtime_ns, reverse=True)

    codecs: dict[int, Path] = {}
    for path in newest_first(model_path(settings, dataset, "_").parent):
        try:
            codecs.setdefault(load_codec(path).head.spec.bits, path)
        except InputError:
            continue  # not a codec file: not this folder's business
    encoders = newest_first(models_root(settings) / dataset)
    return [codecs[b] for b in sorted(codecs)], (encoders[0] if encoders else None)


def bench_retrieval_quality(codec_model_paths: Sequence[str | Path], embed_model_path: str | Path,
                            settings: Settings | None = None, k: int = 20, *,
                            device: str = "cpu") -> tuple[RetrievalRow, ...]:  # fmt: skip
    """Quality rows (see the module) for each codec model on its held-out patches; one
    float_embedding row per distinct held-out set; `goal_met` on every code row."""
    from ocog_lib.compress.quality import held_out_patches
    from ocog_lib.compress.train import load_codec
    from ocog_lib.embed.train import load_encoder
    from ocog_lib.stream.device import pick_device

    if k < 1:
        raise InputError(f"k {k}", "must be at least 1")
    if not codec_model_paths:
        raise InputError("codec models", "give one or more codec model files")
    settings = settings or Settings.from_env()
    dev = pick_device(device)
    encoder, emeta = load_encoder(embed_model_path, dev)
    rows: list[RetrievalRow] = []
    floats: dict[bytes, RetrievalRow] = {}
    for path in codec_model_paths:
        loaded = load_codec(path, dev)
        data = held_out_patches(loaded.meta, settings)
        _check_pair(loaded.meta, data.raw.shape, encoder, emeta, embed_model_path)
        key = f"{loaded.meta['dataset']}/{loaded.meta['variant']}".encode() + data.windows.tobytes()
        fresh = key not in floats
        new = [replace(r, content_hash=model_hash(path))
               for r in _quality_rows(loaded, data, encoder, emeta, k, dev, fresh)]
        if fresh:
            floats[key] = next(r for r in new if r.method == "float_embedding")
        rows += [with_goal(r, floats[key]) for r in new]
    return tuple(rows)


def _check_pair(meta: dict, shape: tuple, encoder, emeta: dict, embed_path) -> None:
    """The encoder must take the codec's patches: as many bands, the same patch size."""
    if encoder.spec.in_channels != shape[1] or int(emeta["patch_size"]) != shape[2]:
        raise InputError(embed_path, f"encoder of {encoder.spec.in_channels} bands and "
                         f"{emeta['patch_size']} px patches; codec {meta['model_id']}'s "
                         f"patches are {shape[1]} bands of {shape[2]} px")  # fmt: skip


def _quality_rows(loaded, data, encoder, emeta: dict, k: int, dev, with_float: bool
                  ) -> list[RetrievalRow]:  # fmt: skip
    """The four methods on one codec's held-out patches (float only when `with_float`)."""
    import torch

    from ocog_lib.compress.bitstream import decode, encode
    from ocog_lib.compress.hashing import codes_from_bitstreams
    from ocog_lib.compress.metrics import bits_per_pixel, to_dn
    from ocog_lib.compress.quality import random_codes
    from ocog_lib.embed.infer import encode as embed
    from ocog_lib.embed.train import normalised

    meta, bits = loaded.meta, loaded.head.spec.bits
    shape, seed = tuple(data.raw.shape[1:]), int(meta["config"]["seed"])
    streams = encode(loaded.codec, normalised(data.raw, meta["norm"]))
    n = len(streams)
    clock = _Clock(n)
    with clock("hash"):
        codes = codes_from_bitstreams(loaded.codec, loaded.head, streams, shape)
    with clock("float_embedding"):
        vectors = embed(encoder, data.raw, emeta["norm"], dev)
    with clock("decoded_pixel_hash"):
        pixels = torch.from_numpy(to_dn(decode(loaded.codec, streams, shape), meta["norm"])
                                  .astype(np.float32))  # fmt: skip
        decoded = simhash(embed(encoder, pixels, emeta["norm"], dev), bits, seed)
    items = {"hash": codes, "float_embedding": vectors, "decoded_pixel_hash": decoded,
             "random_codes": random_codes(n, bits, seed)}  # fmt: skip
    common = {"codec_model_id": meta["model_id"], "embed_model_id": emeta.get("model_id"),
              "same_split": _same_split(meta, emeta),
              "archive_bpp": bits_per_pixel(streams, n * shape[1] * shape[2]),
              "encoder_dim": int(vectors.shape[1])}  # fmt: skip
    return [_scored(m, v, data.labels, k, bits, clock.ms.get(m), meta["dataset"], common)
            for m, v in items.items() if with_float or m != "float_embedding"]  # fmt: skip


class _Clock:
    """ms per item of each timed step."""

    def __init__(self, n: int) -> None:
        self.n, self.ms = max(n, 1), {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        yield
        self.ms[name] = (time.perf_counter() - t0) * 1e3 / self.n


def _same_split(meta: dict, emeta: dict) -> bool:
    """Whether the encoder held out the codec's held-out patches too (same files, patch
    size and split): else some of them may be its training rows."""
    same = all(meta.get(key) == emeta.get(key)
               for key in ("dataset", "variant", "role", "fingerprint", "patch_size"))  # fmt: skip
    split = ("val_fraction", "max_val_patches")
    return same and all(meta["config"].get(s) == emeta.get("config", {}).get(s) for s in split)


def _scored(method: str, items: np.ndarray, labels: np.ndarray, k: int, bits: int,
            ms: float | None, dataset: str, extra: dict) -> RetrievalRow:  # fmt: skip
    from ocog_lib.compress.quality import hash_scores
    from ocog_lib.embed.quality import retrieval_scores

    code = method in CODE_METHODS
    p, m, queries, used = (hash_scores if code else retrieval_scores)(items, labels, k)
    per_item = bits / 8 if code else 4.0 * items.shape[1]
    return RetrievalRow(kind="quality", method=method, k=used, n=len(items),
                        bits=bits if code else None, dim=None if code else int(items.shape[1]),
                        queries=queries, index_bytes=int(per_item * len(items)),
                        bytes_per_item=per_item, precision_at_k=p, map_at_k=m,
                        encode_ms_per_item=ms, dataset=dataset, extra=dict(extra))  # fmt: skip


def with_goal(row: RetrievalRow, float_row: RetrievalRow) -> RetrievalRow:
    """A code row with the goal's verdict against the float embedding's row in its config;
    other rows unchanged."""
    if row.method not in CODE_METHODS:
        return row
    gap = float(float_row.map_at_k - row.map_at_k)
    ratio = float(float_row.bytes_per_item / row.bytes_per_item)
    goal = {"goal_met": bool(gap <= GOAL_MAP_GAP and ratio >= GOAL_BYTES_RATIO),
            "map_gap_to_float": gap, "bytes_ratio_to_float": ratio,
            "goal": f"mAP@k within {GOAL_MAP_GAP:g} of float_embedding at >= "
                    f"{GOAL_BYTES_RATIO:g}x fewer bytes/item"}  # fmt: skip
    return replace(row, extra={**row.extra, **goal})


# --- output ------------------------------------------------------------------------------

_SCALE = ("method", "n", "bits", "dim", "build_s", "index_MB", "B/item", "p50_ms", "p95_ms",
          "recall@k", "queries", "note")  # fmt: skip
_QUALITY = ("method", "dataset", "n", "bits", "dim", "B/item", "P@k", "mAP@k", "encode_ms/item",
            "goal_met", "codec")  # fmt: skip


def _r(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


def _note(r: RetrievalRow) -> str:
    e = r.extra
    if r.method == "hamming_mih":
        return f"m={e['substrings']}, equals scan: {e['equals_scan']}"
    if "queries_subset" in e:
        return "timed on a subset of the queries"
    return f"ef={e['expansion_search']}" if r.method == "float_hnsw" else ""


def format_retrieval_bench(result: RetrievalBench) -> str:
    """The scale rows and the quality rows, each an aligned table."""
    from ocog_lib.results import format_table

    k = result.config.get("k", "k")
    out = [f"run {result.run_id}"]
    scale = [r for r in result.rows if r.kind == "scale"]
    if scale:
        out.append(f"scale: recall@{k} against exact search; one query at a time")
        out.append(format_table(list(_SCALE), [
            [r.method, r.n, r.bits, r.dim, _r(r.build_s, 2), _r(r.index_bytes / 2**20, 1),
             _r(r.bytes_per_item, 1), _r(r.p50_ms, 3), _r(r.p95_ms, 3), _r(r.recall_at_k, 4),
             r.queries, _note(r)] for r in scale]))  # fmt: skip
    quality = [r for r in result.rows if r.kind == "quality"]
    if quality:
        goal = next((r.extra["goal"] for r in quality if "goal" in r.extra), "n/a")
        out.append(f"quality: held-out patches, exact search, k={quality[0].k}; goal: {goal}")
        out.append(format_table(list(_QUALITY), [
            [r.method, r.dataset, r.n, r.bits, r.dim, _r(r.bytes_per_item, 1),
             _r(r.precision_at_k, 4), _r(r.map_at_k, 4), _r(r.encode_ms_per_item, 3),
             r.extra.get("goal_met"), r.extra.get("codec_model_id")]
            for r in quality]))  # fmt: skip
    return "\n".join(out)


def retrieval_rows_for_db(result: RetrievalBench, host: dict, git_sha: str | None
                          ) -> list[dict]:  # fmt: skip
    columns = ("kind", "method", "dataset", "n", "bits", "dim", "k", "queries", "build_s",
               "index_bytes", "bytes_per_item", "p50_ms", "p95_ms", "recall_at_k",
               "precision_at_k", "map_at_k", "encode_ms_per_item", "content_hash")  # fmt: skip
    return [{"run_id": result.run_id, "git_sha": git_sha, "host": host,
             **{c: getattr(r, c) for c in columns}, "config": {**result.config, **r.extra}}
            for r in result.rows]  # fmt: skip


def record_retrieval(result: RetrievalBench, settings: Settings) -> int:
    """Append the rows to DuckDB's `retrieval_benchmarks`, with this host and commit (a
    locked file spools them: `results.write_rows`)."""
    from ocog_lib import results
    from ocog_lib.host import git_sha, host_facts

    return results.write_rows(settings.results_db, "retrieval_benchmarks",
                              retrieval_rows_for_db(result, host_facts(), git_sha()))
