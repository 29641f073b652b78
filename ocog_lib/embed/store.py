"""Embeddings in the results file (`patch_embeddings`) and their GeoParquet export.

One table holds every (dataset, model_id): `vector` is FLOAT[] with its length in `dim`
(a CHECK keeps them equal) because a fixed FLOAT[16] column cannot hold a 64-d model's rows;
queries cast it to FLOAT[dim], which array_cosine_similarity requires (it refuses FLOAT[]);
the cast makes an exact scan ~1.7x slower than a stored FLOAT[16] (docs/similarity.md),
the HNSW index not at all. `idx` numbers a set's rows from 0 (the key of the ANN index);
`batch` is the content fingerprint of the set up to and including the write that added
the row, so the segments of a set say what it holds without reading a vector, and an
index that covers a prefix can be extended.

Writes go through `results.write_rows` (bulk `Columns`): replacing a set's rows is one
transaction, an append adds a segment. Reads use the read-only sandbox.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

from ocog_lib import results
from ocog_lib.atomic import atomic_path
from ocog_lib.embed.vectors import NO_LABEL, EmbeddingSet
from ocog_lib.errors import InputError

TABLE = "patch_embeddings"
WKB_POINT = np.dtype([("order", "u1"), ("kind", "<u4"), ("x", "<f8"), ("y", "<f8")])


class NoEmbeddings(InputError):
    """No embeddings (for this dataset, model) in the results file yet."""


@dataclass(frozen=True)
class Segment:
    first: int  # idx of its first row
    rows: int
    fingerprint: str  # the set's content fingerprint up to and including this segment


@dataclass(frozen=True)
class StoredSet:
    """What the results file holds for one (dataset, model_id): the ANN index's yardstick."""

    dataset: str
    model_id: str
    dim: int
    segments: tuple[Segment, ...]
    written_at: dt.datetime | None = None

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.segments)

    @property
    def fingerprint(self) -> str:
        return self.segments[-1].fingerprint if self.segments else ""


def content_fingerprint(es: EmbeddingSet, first: int, previous: str = "") -> str:
    """sha256 of the previous fingerprint, the first idx and every field of every row."""
    h = hashlib.sha256(f"{previous}|{first}|{len(es)}|{es.dim}|".encode())
    for name in ("vectors", "cells", "lon", "lat", "time", "row", "col", "labels"):
        h.update(np.ascontiguousarray(getattr(es, name)).tobytes())
    h.update("\0".join(map(str, es.source)).encode())
    return h.hexdigest()[:32]


def write_embeddings(db_path: str | Path, dataset: str, model_id: str, es: EmbeddingSet, *,
                     append: bool = False, lock_wait: float | None = None) -> StoredSet:
    """Store `es` as the set (dataset, model_id), replacing its rows in one transaction, or
    after its rows (`append`: same dim; a new segment). Returns what the file now holds."""
    _check_set(dataset, model_id, es)
    previous = _current(db_path, dataset, model_id) if append else None
    if previous is not None and previous.dim != es.dim:
        raise InputError(f"embeddings {dataset}/{model_id}", f"dim {es.dim} cannot be appended "
                         f"to a set of dim {previous.dim}")  # fmt: skip
    first = previous.rows if previous else 0
    fp = content_fingerprint(es, first, previous.fingerprint if previous else "")
    results.write_rows(db_path, TABLE, _columns(dataset, model_id, es, first, fp),
                       replace_where=None if append else {"dataset": dataset,
                                                          "model_id": model_id},
                       lock_wait=lock_wait)  # fmt: skip
    segments = (previous.segments if previous else ()) + (Segment(first, len(es), fp),)
    return StoredSet(dataset, model_id, es.dim, segments)


def _check_set(dataset: str, model_id: str, es: EmbeddingSet) -> None:
    if not dataset or not model_id:
        raise InputError(f"embeddings {dataset!r}/{model_id!r}", "dataset and model_id "
                         "must not be empty")  # fmt: skip
    if not len(es):
        raise InputError(f"embeddings {dataset}/{model_id}", "no rows to store")
    bad = es.not_unit()
    if len(bad):
        raise InputError(f"embeddings {dataset}/{model_id}", f"{len(bad)} vector(s) are not "
                         f"unit length (first: row {bad[0]})")  # fmt: skip


def _current(db_path: str | Path, dataset: str, model_id: str) -> StoredSet | None:
    """The set as a writer sees it (spooled writes merged first), None when absent."""
    with results.connect(db_path) as con:
        found = _sets(con, dataset, model_id)
    return found[0] if found else None


def _columns(dataset: str, model_id: str, es: EmbeddingSet, first: int,
             fp: str) -> results.Columns:  # fmt: skip
    n = len(es)
    labels = np.asarray(es.labels, dtype=np.int16)
    label = np.where(labels == NO_LABEL, None, labels.astype(object))
    return results.Columns({
        "dataset": np.full(n, dataset, dtype=object),
        "model_id": np.full(n, model_id, dtype=object),
        "idx": np.arange(first, first + n, dtype=np.int64),
        "cell": np.asarray(es.cells, dtype=np.uint64),
        "lon": np.asarray(es.lon, dtype=np.float64), "lat": np.asarray(es.lat, dtype=np.float64),
        "time": np.asarray(es.time, dtype="datetime64[us]"),
        "source": np.asarray(es.source, dtype=object),
        "row": np.asarray(es.row, dtype=np.int32), "col": np.asarray(es.col, dtype=np.int32),
        "label": label, "dim": np.full(n, es.dim, dtype=np.int16), "vector": es.vectors,
        "batch": np.full(n, fp, dtype=object),
    })  # fmt: skip


# --- reading ------------------------------------------------------------------------------


def stored_sets(db_path: str | Path, dataset: str | None = None) -> list[StoredSet]:
    """Every stored set (of `dataset`), newest write first; [] when the file has none."""
    if not Path(db_path).exists():
        return []
    with results.connect(db_path, read_only=True) as con:
        return read_sets(con, dataset)


def read_sets(con: duckdb.DuckDBPyConnection, dataset: str | None = None,
              model_id: str | None = None) -> list[StoredSet]:  # fmt: skip
    """`stored_sets` in an open connection: read there, what later reads there see."""
    return _sets(con, dataset, model_id) if _has_table(con) else []


def stored_set(db_path: str | Path, dataset: str, model_id: str | None = None) -> StoredSet:
    """One set: `model_id`, or the dataset's newest; NoEmbeddings naming what exists."""
    if not Path(db_path).exists():
        return pick_set([], db_path, dataset, model_id)
    with results.connect(db_path, read_only=True) as con:
        return pick_set(read_sets(con), db_path, dataset, model_id)


def pick_set(sets: list[StoredSet], db_path: str | Path, dataset: str,
             model_id: str | None = None) -> StoredSet:  # fmt: skip
    """The newest of `sets` of `dataset` (and `model_id`); NoEmbeddings naming the others."""
    found = [s for s in sets if s.dataset == dataset and model_id in (None, s.model_id)]
    if found:
        return found[0]
    others = sorted({f"{s.dataset}/{s.model_id}" for s in sets})
    what = f"dataset {dataset!r}" + (f" model {model_id!r}" if model_id else "")
    raise NoEmbeddings(what, f"no embeddings in {db_path} yet" + (
        f" (stored: {', '.join(others[:10])})" if others else
        " (embed the dataset first, e.g. `ocog demo`)"))  # fmt: skip


def _has_table(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(results.table_columns(con, TABLE))


def _sets(con: duckdb.DuckDBPyConnection, dataset: str | None,
          model_id: str | None) -> list[StoredSet]:  # fmt: skip
    """Segments grouped into sets; a set whose idx are not 0..n-1 in order is refused."""
    where, params = _where(dataset, model_id)
    rows = con.execute(
        f"SELECT dataset, model_id, batch, min(idx), max(idx), count(*), min(dim), max(dim), "
        f"max(written_at) FROM {TABLE} {where} GROUP BY ALL ORDER BY dataset, model_id, "
        f"min(idx)", params).fetchall()  # fmt: skip
    grouped: dict[tuple[str, str], list[tuple]] = {}
    for r in rows:
        grouped.setdefault((r[0], r[1]), []).append(r)
    out = [_one_set(key, segs) for key, segs in grouped.items()]
    return sorted(out, key=lambda s: (s.written_at or dt.datetime.min.replace(tzinfo=dt.UTC)),
                  reverse=True)  # fmt: skip


def _one_set(key: tuple[str, str], segs: list[tuple]) -> StoredSet:
    segments, expect = [], 0
    for _, _, fp, lo, hi, n, dmin, dmax, _ in segs:
        if lo != expect or hi - lo + 1 != n or dmin != dmax or dmin != segs[0][6]:
            raise InputError(f"embeddings {key[0]}/{key[1]}", "rows are inconsistent (idx not "
                             "0..n-1 by segment, or mixed dims): rewrite the set")  # fmt: skip
        segments.append(Segment(int(lo), int(n), fp))
        expect = hi + 1
    return StoredSet(key[0], key[1], int(segs[0][6]), tuple(segments),
                     max(s[8] for s in segs))  # fmt: skip


def _where(dataset: str | None, model_id: str | None) -> tuple[str, list]:
    parts, params = [], []
    for name, value in (("dataset", dataset), ("model_id", model_id)):
        if value is not None:
            parts.append(f"{name} = ?")
            params.append(value)
    return ("WHERE " + " AND ".join(parts)) if parts else "", params


def load_vectors(con: duckdb.DuckDBPyConnection, dataset: str, model_id: str, dim: int, *,
                 start: int = 0, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(idx, vectors) of the rows with start <= idx < stop, in idx order: one flat float32
    fetch, its order checked against the idx fetched beside it."""
    sql = (f"SELECT idx, unnest(vector) AS x FROM (SELECT idx, vector FROM {TABLE} WHERE "
           f"dataset = ? AND model_id = ? AND idx >= ? AND idx < ? ORDER BY idx)")  # fmt: skip
    end = np.iinfo(np.int64).max if stop is None else stop
    got = con.execute(sql, [dataset, model_id, start, end]).fetchnumpy()
    flat_idx, flat = np.asarray(got["idx"]), np.asarray(got["x"], dtype=np.float32)
    idx = flat_idx[::dim]
    if len(flat) % dim or not np.array_equal(np.repeat(idx, dim), flat_idx):
        raise InputError(f"embeddings {dataset}/{model_id}", "vectors came back out of order")
    return idx.astype(np.int64), flat.reshape(-1, dim)


def load_embeddings(db_path: str | Path, dataset: str, model_id: str | None = None
                    ) -> tuple[StoredSet, EmbeddingSet]:  # fmt: skip
    """The whole set back as an EmbeddingSet, rows in idx order."""
    if not Path(db_path).exists():
        pick_set([], db_path, dataset, model_id)
    with results.connect(db_path, read_only=True) as con:
        stored = pick_set(read_sets(con), db_path, dataset, model_id)
        idx, vectors = load_vectors(con, dataset, stored.model_id, stored.dim)
        meta = con.execute(
            f'SELECT cell, lon, lat, time, source, "row", col, coalesce(label, {NO_LABEL}) AS '
            f"label FROM {TABLE} WHERE dataset = ? AND model_id = ? ORDER BY idx",
            [dataset, stored.model_id]).fetchnumpy()  # fmt: skip
    es = EmbeddingSet(
        vectors, np.asarray(meta["cell"], np.uint64), np.asarray(meta["lon"], np.float64),
        np.asarray(meta["lat"], np.float64), _times(meta["time"]),
        np.asarray(meta["source"], dtype=object), np.asarray(meta["row"], np.int32),
        np.asarray(meta["col"], np.int32), np.asarray(meta["label"], np.int16))
    return stored, es


def _times(values) -> np.ndarray:
    """A fetched TIMESTAMP column (masked where NULL) as datetime64[us] with NaT."""
    filled = np.ma.filled(values.astype("datetime64[us]"), np.datetime64("NaT"))
    return np.asarray(filled, dtype="datetime64[us]")


# --- GeoParquet ------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeoParquetExport:
    path: Path
    rows: int
    dim: int
    model_id: str


def wkb_points(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Little-endian ISO WKB points (21 bytes each), as an object array of bytes."""
    packed = np.zeros(len(lon), dtype=WKB_POINT)
    packed["order"], packed["kind"], packed["x"], packed["y"] = 1, 1, lon, lat
    raw = packed.tobytes()
    size = WKB_POINT.itemsize
    out = np.empty(len(lon), dtype=object)
    out[:] = [raw[i:i + size] for i in range(0, len(raw), size)]
    return out


def read_wkb_point(blob: bytes) -> tuple[float, float]:
    order, kind = blob[0], struct.unpack("<I" if blob[0] == 1 else ">I", blob[1:5])[0]
    if kind != 1 or len(blob) != 21:
        raise InputError("WKB", f"not a 2-D point (type {kind}, {len(blob)} bytes)")
    return struct.unpack("<dd" if order == 1 else ">dd", blob[5:21])


def geo_metadata(lon: np.ndarray, lat: np.ndarray) -> dict:
    """GeoParquet 1.1 `geo` metadata: WKB points in lon/lat (no "crs" key: OGC:CRS84)."""
    bbox = [float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())]
    return {"version": "1.1.0", "primary_column": "geometry",
            "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Point"],
                                     "edges": "planar", "bbox": bbox}}}  # fmt: skip


def export_geoparquet(db_path: str | Path, dataset: str, out: str | Path,
                      model_id: str | None = None) -> GeoParquetExport:
    """The set as GeoParquet (cell, h3, lon, lat, time, label, source, row, col,
    vector FLOAT[dim], geometry), written by DuckDB to a temporary name, then renamed."""
    stored, es = load_embeddings(db_path, dataset, model_id)
    import h3

    meta = json.dumps(geo_metadata(es.lon, es.lat)).replace("'", "''")
    scan = {"cell": es.cells, "h3": np.array([h3.int_to_str(int(c)) for c in es.cells],
                                            dtype=object),
            "lon": es.lon, "lat": es.lat, "time": es.time, "label": es.labels,
            "source": es.source, "row": es.row, "col": es.col,
            "geometry": wkb_points(es.lon, es.lat)}  # fmt: skip
    vec = ", ".join(f"v{j}" for j in range(es.dim))
    scan |= {f"v{j}": part for j, part in enumerate(np.ascontiguousarray(es.vectors.T))}
    con = duckdb.connect(":memory:")
    try:
        con.register("rows", scan)
        with atomic_path(out) as tmp:
            con.execute(
                f"COPY (SELECT cell, h3, lon, lat, time, label, source, \"row\", col, "
                f"list_value({vec})::FLOAT[{es.dim}] AS vector, geometry FROM rows) "
                f"TO '{_sql_path(tmp)}' (FORMAT parquet, KV_METADATA {{geo: '{meta}'}})")
    finally:
        con.close()
    return GeoParquetExport(Path(out), len(es), es.dim, stored.model_id)


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")
