"""patch_embeddings: the bulk write through results.write_rows, replace and append,
segments and fingerprints, the spool, and the GeoParquet export read back by DuckDB."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys

import duckdb
import numpy as np
import pytest

from ocog_lib import results
from ocog_lib.embed import store
from ocog_lib.embed.vectors import EmbeddingSet
from ocog_lib.errors import InputError
from tests.support.embedsets import grid_set

FIELDS = ("vectors", "cells", "lon", "lat", "time", "row", "col", "labels")


def _equal(a: EmbeddingSet, b: EmbeddingSet) -> None:
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert list(a.source) == list(b.source)


def test_write_then_load_is_the_same_set_bit_for_bit(tmp_path):
    db = tmp_path / "r.duckdb"
    es = grid_set(10, 16)
    es = EmbeddingSet(*(getattr(es, f) for f in ("vectors", "cells", "lon", "lat")),
                      es.time.copy(), es.source, es.row, es.col, es.labels)  # fmt: skip
    es.time[3] = np.datetime64("NaT")
    stored = store.write_embeddings(db, "sample", "m16", es)
    assert (stored.rows, stored.dim, len(stored.segments)) == (100, 16, 1)
    again, back = store.load_embeddings(db, "sample", "m16")
    _equal(back, es)
    assert again.fingerprint == stored.fingerprint == store.content_fingerprint(es, 0)
    cols, rows = results.query(db, "SELECT typeof(vector), typeof(cell), count(*), "
                                   "count(label), min(dim) FROM patch_embeddings GROUP BY 1, 2")
    assert rows == [("FLOAT[]", "UBIGINT", 100, 80, 16)]  # NO_LABEL is NULL in SQL


def test_sets_of_other_dims_share_the_table_and_cast_for_cosine(tmp_path):
    db = tmp_path / "r.duckdb"
    store.write_embeddings(db, "sample", "m16", grid_set(4, 16))
    store.write_embeddings(db, "sample", "m64", grid_set(4, 64, seed=1))
    sets = {s.model_id: s.dim for s in store.stored_sets(db)}
    assert sets == {"m16": 16, "m64": 64}
    _, rows = results.query(db, "SELECT min(array_cosine_similarity(vector::FLOAT[64], "
                                "vector::FLOAT[64])) FROM patch_embeddings WHERE dim = 64")
    assert rows[0][0] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(InputError, match="array_cosine_similarity"):  # FLOAT[] is refused
        results.query(db, "SELECT array_cosine_similarity(vector, vector) FROM patch_embeddings")


def test_replace_swaps_the_whole_set_in_one_transaction(tmp_path, monkeypatch):
    db = tmp_path / "r.duckdb"
    first = grid_set(6, 16, seed=1)
    store.write_embeddings(db, "sample", "m", first)
    store.write_embeddings(db, "sample", "m", grid_set(5, 16, seed=2))
    stored, back = store.load_embeddings(db, "sample", "m")
    assert stored.rows == 25 and len(stored.segments) == 1
    _equal(back, grid_set(5, 16, seed=2))

    def fail(*_a, **_k):
        raise duckdb.ConversionException("boom after the delete")

    monkeypatch.setattr(results, "_insert_columns", fail)
    with pytest.raises(InputError, match="boom"):
        store.write_embeddings(db, "sample", "m", first)
    _, kept = store.load_embeddings(db, "sample", "m")
    _equal(kept, grid_set(5, 16, seed=2))  # the delete was rolled back with the insert


def test_append_adds_a_segment_whose_fingerprint_chains(tmp_path):
    db = tmp_path / "r.duckdb"
    a, b = grid_set(4, 16, seed=1), grid_set(3, 16, seed=2, lon0=-76.0)
    s1 = store.write_embeddings(db, "sample", "m", a)
    s2 = store.write_embeddings(db, "sample", "m", b, append=True)
    assert [(g.first, g.rows) for g in s2.segments] == [(0, 16), (16, 9)]
    assert s2.segments[0].fingerprint == s1.fingerprint
    assert s2.fingerprint == store.content_fingerprint(b, 16, s1.fingerprint)
    assert store.stored_set(db, "sample", "m") == store.StoredSet(
        "sample", "m", 16, s2.segments, store.stored_set(db, "sample").written_at)
    _, back = store.load_embeddings(db, "sample")
    _equal(back, EmbeddingSet.concat([a, b]))
    with pytest.raises(InputError, match="dim 64 cannot be appended"):
        store.write_embeddings(db, "sample", "m", grid_set(2, 64), append=True)


def test_bad_sets_and_missing_sets_are_named(tmp_path):
    db = tmp_path / "r.duckdb"
    with pytest.raises(store.NoEmbeddings, match="embed the dataset first"):
        store.stored_set(db, "sample")
    es = grid_set(3, 16)
    bad = EmbeddingSet(es.vectors * 2, *(getattr(es, f) for f in FIELDS[1:5]), es.source,
                       es.row, es.col, es.labels)  # fmt: skip
    with pytest.raises(InputError, match="not unit length"):
        store.write_embeddings(db, "sample", "m", bad)
    with pytest.raises(InputError, match="must not be empty"):
        store.write_embeddings(db, "", "m", es)
    store.write_embeddings(db, "sample", "m", es)
    with pytest.raises(store.NoEmbeddings, match=r"stored: sample/m"):
        store.stored_set(db, "other")


@contextlib.contextmanager
def _locked(db):
    """Another process holds the results file read-write until the block ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
         "print('locked', flush=True); sys.stdin.readline(); c.close()", str(db)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.stdin.close()
        assert holder.wait(timeout=30) == 0


def test_a_bulk_write_that_cannot_get_the_lock_is_spooled_as_columns_then_merged(tmp_path):
    db = tmp_path / "r.duckdb"
    store.write_embeddings(db, "sample", "old", grid_set(2, 16))
    es = grid_set(8, 16, seed=3)
    with _locked(db):
        store.write_embeddings(db, "sample", "m", es, lock_wait=0.1)
        status = results.spool_status(db)
        assert (status.writes, status.rows) == (1, 64)
        spooled = json.loads(next(results.spool_dir(db).glob("*.json")).read_text())
        assert "columns" in spooled and "rows" not in spooled
    results.write_rows(db, "similar_benchmarks", [])  # the next writer merges the spool
    _, back = store.load_embeddings(db, "sample", "m")
    _equal(back, es)
    _, rows = results.query(db, "SELECT count(*) FROM patch_embeddings WHERE model_id = 'm' "
                                "AND written_at IS NOT NULL")  # fmt: skip
    assert rows == [(64,)] and results.spool_status(db).writes == 0


def test_bulk_columns_convert_like_rows(tmp_path):
    db = tmp_path / "r.duckdb"
    n = 3
    cols = results.Columns({
        "run_id": np.array(["r"] * n, dtype=object), "method": np.array(["hnsw"] * n),
        "n": np.arange(n), "dim": np.full(n, 16), "p50_ms": np.array([1.0, np.nan, 2.0]),
        "config": np.array([{"password": "hunter22", "a": 1}] * n, dtype=object),
        "measured_at": np.array(["2024-01-02T03:04:05"] * n, dtype="datetime64[us]")})
    assert results.write_rows(db, "similar_benchmarks", cols) == 3
    _, rows = results.query(db, "SELECT method, p50_ms, config, epoch(measured_at) "
                                "FROM similar_benchmarks ORDER BY n")  # fmt: skip
    assert [r[1] for r in rows] == [1.0, None, 2.0]  # NaN is NULL, as in the row path
    assert json.loads(rows[0][2]) == {"a": 1, "password": "***"}
    assert rows[0][3] == 1704164645  # datetime64 taken as UTC
    with pytest.raises(InputError, match="unequal lengths"):
        results.Columns({"a": np.arange(2), "b": np.arange(3)})


def test_geoparquet_export_reads_back_with_its_metadata_and_points(tmp_path):
    db, out = tmp_path / "r.duckdb", tmp_path / "exports" / "sample.parquet"
    es = grid_set(6, 16)
    store.write_embeddings(db, "sample", "m", es)
    done = store.export_geoparquet(db, "sample", out)
    assert (done.path, done.rows, done.dim, done.model_id) == (out, 36, 16, "m")
    assert [p.name for p in out.parent.iterdir()] == ["sample.parquet"]  # no temporary left
    con = duckdb.connect()
    kv = dict(con.execute("SELECT decode(key), decode(value) FROM parquet_kv_metadata(?)",
                          [str(out)]).fetchall())  # fmt: skip
    geo = json.loads(kv["geo"])
    assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry"
    column = geo["columns"]["geometry"]
    assert column["encoding"] == "WKB" and column["geometry_types"] == ["Point"]
    assert "crs" not in column  # absent: OGC:CRS84 (lon/lat) by the spec
    assert column["bbox"] == [es.lon.min(), es.lat.min(), es.lon.max(), es.lat.max()]
    rows = con.execute("SELECT cell, lon, lat, geometry, vector, typeof(vector), time, h3 "
                       "FROM read_parquet(?)", [str(out)]).fetchall()  # fmt: skip
    assert [r[0] for r in rows] == es.cells.tolist()
    points = np.array([store.read_wkb_point(r[3]) for r in rows])
    np.testing.assert_array_equal(points, np.column_stack([es.lon, es.lat]))
    np.testing.assert_array_equal(np.array([r[4] for r in rows], np.float32), es.vectors)
    assert rows[0][5] == "FLOAT[]" and rows[0][6] is not None  # Parquet: a list, 16 long
    import h3

    assert rows[0][7] == h3.int_to_str(int(es.cells[0]))
