"""The ANN index of one stored set: usearch HNSW, persisted beside the results file.

`<db>.index/<dataset>/<model_id>/index.json` says what the index covers (dataset, model_id,
dim, rows, the set's content fingerprint at those rows, the HNSW settings) and names the
index file; both are written to temporary names and renamed, the JSON last, so a reader
sees the old index or the new one, never half of one. Before every use the JSON is compared
with the set's segments (`store.StoredSet`): the same fingerprint is fresh; a fingerprint
of an earlier segment means rows were appended since, and only those are added; anything
else (rows replaced, deleted, another dim) is a rebuild. `on_stale="refuse"` raises
StaleIndex instead, so an index older than its embeddings never answers.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import duckdb
import numpy as np

from ocog_lib.atomic import atomic_path, atomic_write_text
from ocog_lib.embed.store import StoredSet, load_vectors
from ocog_lib.errors import InputError
from ocog_lib.host import usable_cores

FORMAT = "ocog-hnsw/1"
ON_STALE = ("rebuild", "refuse")
_ADD_CHUNK = 1_000_000  # rows read from DuckDB and added per step


class StaleIndex(InputError):
    """The ANN index is older than its embeddings, and rebuilding was not allowed."""


@dataclass(frozen=True)
class HnswConfig:
    """usearch HNSW settings; `ocog bench similar` measured these (docs/similarity.md)."""

    connectivity: int = 16  # M: links per node and layer
    expansion_add: int = 64  # ef_construction: 128 doubled the build for little recall
    expansion_search: int = 128  # ef at query time: 64 gave recall@10 0.985 at 1e6 (16-d)
    dtype: str = "f32"  # stored scalar: f32, f16 or i8
    threads: int = 0  # threads to build with; 0: the usable cores

    def __post_init__(self) -> None:
        for name in ("connectivity", "expansion_add", "expansion_search"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 2 <= value <= 4096:
                raise InputError(f"{name} {value!r}", "must be an integer in 2..4096")
        if self.dtype not in ("f32", "f16", "i8"):
            raise InputError(f"dtype {self.dtype!r}", "choose f32, f16 or i8")
        if self.threads < 0:
            raise InputError(f"threads {self.threads}", "must be 0 (all cores) or more")

    def build_threads(self) -> int:
        return self.threads or usable_cores()


@dataclass(frozen=True)
class IndexMeta:
    dataset: str
    model_id: str
    dim: int
    rows: int
    fingerprint: str
    file: str  # the index file's name, in the same folder
    connectivity: int
    expansion_add: int
    expansion_search: int
    dtype: str
    built_at: str
    added: int  # rows added by the write that made this file (rows: a full build)
    format: str = FORMAT

    def config(self) -> HnswConfig:
        return HnswConfig(self.connectivity, self.expansion_add, self.expansion_search,
                          self.dtype)  # fmt: skip


@dataclass
class AnnIndex:
    """A loaded index and how it came to be: loaded, built, extended or rebuilt."""

    meta: IndexMeta
    index: object  # usearch.index.Index
    action: str

    def search(self, vector: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        """(idx, cosine score) of up to `count` nearest rows, best first."""
        found = self.index.search(np.asarray(vector, dtype=np.float32), count, threads=1)
        return found.keys.astype(np.int64), (1.0 - found.distances).astype(np.float32)


def index_folder(db_path: str | Path, dataset: str, model_id: str) -> Path:
    return Path(f"{Path(db_path)}.index") / _safe(dataset) / _safe(model_id)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "_"


def new_index(dim: int, config: HnswConfig):
    """An empty usearch HNSW index over inner product (the vectors are unit length)."""
    from usearch.index import Index

    return Index(ndim=dim, metric="ip", dtype=config.dtype, connectivity=config.connectivity,
                 expansion_add=config.expansion_add,
                 expansion_search=config.expansion_search)  # fmt: skip


def read_meta(folder: Path) -> IndexMeta | None:
    """The folder's index.json, None when absent or not an index this version writes."""
    try:
        doc = json.loads((folder / "index.json").read_text())
        meta = IndexMeta(**doc)
    except (OSError, ValueError, TypeError):
        return None
    return meta if meta.format == FORMAT else None


def plan_refresh(meta: IndexMeta | None, stored: StoredSet) -> str:
    """fresh, extend (rows were appended after the ones it holds) or rebuild."""
    if meta is None or meta.dim != stored.dim or (meta.dataset, meta.model_id) != (
            stored.dataset, stored.model_id):  # fmt: skip
        return "rebuild"
    end = 0
    for seg in stored.segments:
        end = seg.first + seg.rows
        if seg.fingerprint == meta.fingerprint and end == meta.rows:
            return "fresh" if end == stored.rows else "extend"
    return "rebuild"


def open_index(con: duckdb.DuckDBPyConnection, db_path: str | Path, stored: StoredSet, *,
               config: HnswConfig | None = None, on_stale: str = "rebuild",
               cached: AnnIndex | None = None) -> AnnIndex:  # fmt: skip
    """The set's index, fresh: loaded, extended or rebuilt (or StaleIndex with "refuse").
    `con` must be the connection `stored` was read in, so the rows added are those rows."""
    if on_stale not in ON_STALE:
        raise InputError(f"on_stale {on_stale!r}", f"choose one of {ON_STALE}")
    folder = index_folder(db_path, stored.dataset, stored.model_id)
    if cached is not None and plan_refresh(cached.meta, stored) == "fresh":
        return replace(cached, action="cached")
    meta = read_meta(folder)
    plan = plan_refresh(meta, stored)
    if plan == "fresh":
        loaded = _load(folder, meta, view=True)
        if loaded is not None:
            return AnnIndex(meta, loaded, "loaded")
        plan = "rebuild"
    if on_stale == "refuse":
        raise StaleIndex(folder, _stale_cause(meta, stored))
    cfg = config or (meta.config() if meta else HnswConfig())
    if plan == "extend":
        index = _load(folder, meta, view=False)
        if index is not None:
            return _add_and_save(con, folder, stored, index, meta.rows, cfg, "extended")
    action = "built" if meta is None else "rebuilt"
    return _add_and_save(con, folder, stored, new_index(stored.dim, cfg), 0, cfg, action)


def _stale_cause(meta: IndexMeta | None, stored: StoredSet) -> str:
    have = f"{stored.rows} rows (fingerprint {stored.fingerprint[:12]})"
    if meta is None:
        return f"no index yet for the {have} of {stored.dataset}/{stored.model_id}"
    return (f"the index covers {meta.rows} rows (fingerprint {meta.fingerprint[:12]}, built "
            f"{meta.built_at}) but the embeddings now hold {have}: it is older than its "
            "embeddings; allow a rebuild (on_stale='rebuild')")


def _load(folder: Path, meta: IndexMeta, *, view: bool):
    """The index file `meta` names, None when missing or not what `meta` says."""
    from usearch.index import Index

    path = folder / meta.file
    try:
        index = Index.restore(str(path), view=view)
    except (OSError, RuntimeError, ValueError):
        return None
    if index is None or index.size != meta.rows or index.ndim != meta.dim:
        return None
    index.expansion_search = meta.expansion_search
    return index


def _add_and_save(con: duckdb.DuckDBPyConnection, folder: Path, stored: StoredSet, index,
                  start: int, cfg: HnswConfig, action: str) -> AnnIndex:  # fmt: skip
    """Add the rows idx >= start in chunks, then save the index and its JSON."""
    threads = cfg.build_threads()
    for lo in range(start, stored.rows, _ADD_CHUNK):
        keys, vectors = load_vectors(con, stored.dataset, stored.model_id, stored.dim,
                                     start=lo, stop=min(lo + _ADD_CHUNK, stored.rows))
        index.add(keys.astype(np.uint64), vectors, threads=threads)
    if index.size != stored.rows:
        raise InputError(f"index of {stored.dataset}/{stored.model_id}", f"holds {index.size} "
                         f"rows after the build, the set {stored.rows}")  # fmt: skip
    index.expansion_search = cfg.expansion_search
    meta = IndexMeta(stored.dataset, stored.model_id, stored.dim, stored.rows,
                     stored.fingerprint, f"hnsw-{stored.fingerprint[:16]}-{stored.rows}.usearch",
                     cfg.connectivity, cfg.expansion_add, cfg.expansion_search, cfg.dtype,
                     dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                     stored.rows - start)  # fmt: skip
    save_index(folder, index, meta)
    return AnnIndex(meta, index, action)


def save_index(folder: Path, index, meta: IndexMeta) -> None:
    """The index file, then index.json naming it (the commit point), then old files go."""
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / meta.file) as tmp:
        index.save(str(tmp))
    atomic_write_text(folder / "index.json", json.dumps(asdict(meta), indent=1))
    for old in folder.glob("hnsw-*.usearch"):
        if old.name != meta.file:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()


class IndexCache:
    """Loaded indexes of one process (the server), reused while their set is unchanged;
    one build at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[str, str, str], AnnIndex] = {}

    def get(self, con: duckdb.DuckDBPyConnection, db_path: str | Path, stored: StoredSet, *,
            config: HnswConfig | None = None, on_stale: str = "rebuild") -> AnnIndex:
        key = (str(db_path), stored.dataset, stored.model_id)
        with self._lock:
            ann = open_index(con, db_path, stored, config=config, on_stale=on_stale,
                             cached=self._items.get(key))  # fmt: skip
            self._items[key] = ann
            return ann
