"""The HNSW index beside the results: built once, loaded, extended by appended rows,
rebuilt (or refused) when the rows it holds changed, saved atomically."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ocog_lib import results
from ocog_lib.embed import index as ix
from ocog_lib.embed import store
from ocog_lib.errors import InputError
from tests.support.embedsets import grid_set

CFG = ix.HnswConfig(connectivity=8, expansion_add=32, expansion_search=64, threads=1)


def _open(db, on_stale="rebuild", cached=None, config=CFG):
    with results.connect(db, read_only=True) as con:
        stored = store.read_sets(con, "sample")[0]
        return stored, ix.open_index(con, db, stored, config=config, on_stale=on_stale,
                                     cached=cached)  # fmt: skip


def _top1(ann: ix.AnnIndex, vector: np.ndarray) -> int:
    keys, scores = ann.search(vector, 1)
    assert scores[0] == pytest.approx(1.0, abs=1e-5)
    return int(keys[0])


def test_first_use_builds_then_loads_what_index_json_describes(tmp_path):
    db = tmp_path / "r.duckdb"
    es = grid_set(10, 16)
    written = store.write_embeddings(db, "sample", "m", es)
    stored, ann = _open(db)
    assert ann.action == "built" and ann.index.size == 100
    folder = ix.index_folder(db, "sample", "m")
    doc = json.loads((folder / "index.json").read_text())
    assert {k: doc[k] for k in ("dataset", "model_id", "dim", "rows", "fingerprint", "added")} \
        == {"dataset": "sample", "model_id": "m", "dim": 16, "rows": 100,
            "fingerprint": written.fingerprint, "added": 100}  # fmt: skip
    assert sorted(p.name for p in folder.iterdir()) == sorted(["index.json", doc["file"]])
    _, again = _open(db)
    assert again.action == "loaded"
    assert [_top1(again, es.vectors[i]) for i in (0, 57, 99)] == [0, 57, 99]
    _, cached = _open(db, cached=again)
    assert cached.action == "cached"


def test_appended_rows_extend_the_index_and_are_found(tmp_path):
    db = tmp_path / "r.duckdb"
    store.write_embeddings(db, "sample", "m", grid_set(8, 16, seed=1))
    _, first = _open(db)
    more = grid_set(5, 16, seed=2, lon0=-76.5)
    store.write_embeddings(db, "sample", "m", more, append=True)
    stored, ann = _open(db, cached=first)  # a cached index of the old rows is not reused
    assert ann.action == "extended" and ann.meta.added == 25 and ann.index.size == 89
    assert ann.meta.fingerprint == stored.fingerprint
    assert _top1(ann, more.vectors[7]) == 64 + 7
    folder = ix.index_folder(db, "sample", "m")
    assert len(list(folder.glob("*.usearch"))) == 1  # the old file went with the new JSON


def test_replaced_rows_rebuild_never_answer_from_the_old_index(tmp_path):
    db = tmp_path / "r.duckdb"
    store.write_embeddings(db, "sample", "m", grid_set(8, 16, seed=1))
    _open(db)
    new = grid_set(8, 16, seed=9)  # same size, other vectors: only the fingerprint differs
    store.write_embeddings(db, "sample", "m", new)
    _, ann = _open(db)
    assert ann.action == "rebuilt"
    assert [_top1(ann, new.vectors[i]) for i in range(0, 64, 9)] == list(range(0, 64, 9))


def test_a_stale_index_can_be_refused_with_a_clear_error(tmp_path):
    db = tmp_path / "r.duckdb"
    store.write_embeddings(db, "sample", "m", grid_set(6, 16, seed=1))
    with pytest.raises(ix.StaleIndex, match="no index yet"):
        _open(db, on_stale="refuse")
    _open(db)
    store.write_embeddings(db, "sample", "m", grid_set(6, 16, seed=2))
    with pytest.raises(ix.StaleIndex, match="older than its embeddings"):
        _open(db, on_stale="refuse")
    with pytest.raises(InputError, match="on_stale"):
        _open(db, on_stale="sometimes")


def test_a_missing_or_broken_index_file_is_rebuilt(tmp_path):
    db = tmp_path / "r.duckdb"
    es = grid_set(6, 16)
    store.write_embeddings(db, "sample", "m", es)
    _, ann = _open(db)
    path = ix.index_folder(db, "sample", "m") / ann.meta.file
    path.write_bytes(b"not an index")
    _, again = _open(db)
    assert again.action == "rebuilt" and _top1(again, es.vectors[5]) == 5
    (path.parent / "index.json").write_text("{broken")
    _, third = _open(db)
    assert third.action == "built" and ix.read_meta(path.parent) is not None


def test_plan_refresh_reads_the_segments():
    seg = store.Segment
    stored = store.StoredSet("d", "m", 16, (seg(0, 10, "a"), seg(10, 5, "b")))

    def meta(rows, fp, dim=16, model="m"):
        return ix.IndexMeta("d", model, dim, rows, fp, "f", 16, 64, 64, "f32", "t", rows)

    assert ix.plan_refresh(meta(15, "b"), stored) == "fresh"
    assert ix.plan_refresh(meta(10, "a"), stored) == "extend"
    assert ix.plan_refresh(meta(10, "x"), stored) == "rebuild"  # rows replaced
    assert ix.plan_refresh(meta(15, "a"), stored) == "rebuild"
    assert ix.plan_refresh(meta(15, "b", dim=64), stored) == "rebuild"
    assert ix.plan_refresh(meta(15, "b", model="other"), stored) == "rebuild"
    assert ix.plan_refresh(None, stored) == "rebuild"


def test_hnsw_config_names_a_bad_setting():
    with pytest.raises(InputError, match="connectivity 1"):
        ix.HnswConfig(connectivity=1)
    with pytest.raises(InputError, match="dtype"):
        ix.HnswConfig(dtype="f64")
