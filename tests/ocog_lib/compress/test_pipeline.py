"""`compress_and_record` end to end on the tiny sample (the run `test_archive` builds):
the stages in order, the hash rows of retrieval_quality equal to what was measured and
shaped as embed's, a second run reusing the spent codec and replacing the rows."""

from __future__ import annotations

import json

import duckdb
import pytest

from ocog_lib import results
from ocog_lib.compress import archive as arch
from ocog_lib.compress.pipeline import (
    HashQualityRun,
    compress_and_record,
    record_hash_quality,
)
from ocog_lib.compress.quality import HashQuality, measure_compress
from ocog_lib.data.lineage import model_hash
from ocog_lib.embed.pipeline import QUALITY_TABLE
from tests.ocog_lib.compress.test_archive import CFG, archived_run, copy_db


@pytest.fixture(scope="module")
def archived(train_variants, tmp_path_factory):
    return archived_run(train_variants, tmp_path_factory)


def _quality_rows(db) -> list[dict]:
    cols, rows = results.query(db, f"SELECT * FROM {QUALITY_TABLE} ORDER BY baseline, method")
    return [dict(zip(cols, r, strict=True)) for r in rows]


def test_the_stages_run_in_order(archived):
    run = archived.run
    assert archived.stages == ("train", "archive", "quality") and run.prepared == ()
    assert (run.training.steps, run.training.trained) == (4, True)
    assert (run.archive.codec_id, run.archive.model_id) == (run.training.codec_id,
                                                            run.training.model_id)
    assert (run.quality.codec_id, run.quality.model_id) == (run.training.codec_id,
                                                            run.training.model_id)


def test_hash_rows_are_what_was_measured(archived):
    q = archived.run.quality
    assert [r.method for r in q.results] == ["hash", "random_codes"] and q.k == 5
    again = measure_compress(archived.run.training.model_path, archived.settings, k=5).hashing
    assert q.results == again  # codes from the held-out bitstreams, as quality measures them
    got = _quality_rows(archived.db)
    assert [(g["method"], g["baseline"]) for g in got] == [("hash", False),
                                                          ("random_codes", True)]
    for g, r in zip(got, q.results, strict=True):
        assert (g["run_id"], g["dataset"], g["model_id"]) == (q.run_id, "sample", q.model_id)
        assert (g["dim"], g["k"], g["n_queries"]) == (r.bits, r.k, r.n_queries) == (16, 5, 64)
        assert (g["precision_at_k"], g["map_at_k"]) == (r.precision_at_k, r.map_at_k)
        config = json.loads(g["config"])
        assert (config["steps"], config["codec_id"]) == (4, q.codec_id)
        assert g["git_sha"] is not None and json.loads(g["host"])["cores"] >= 1
        assert g["content_hash"] == model_hash(archived.run.training.model_path)  # lineage
    assert q.hash_leads == (q.results[0].map_at_k > q.results[1].map_at_k)


def test_a_second_run_reuses_the_codec_and_replaces_the_rows(archived, tmp_path):
    settings = copy_db(archived, tmp_path)
    other = {"run_id": "e", "dataset": "sample", "model_id": "encoder-x", "method": "encoder",
             "baseline": False, "dim": 16, "k": 5}  # an embedding measurement: kept
    results.write_rows(settings.results_db, QUALITY_TABLE, [other])
    second = compress_and_record(CFG, settings, k=5, stats_patches=8, prepare=False)
    assert not second.training.trained
    assert second.training.model_id == archived.run.training.model_id
    assert second.archive.codec_id == archived.run.archive.codec_id
    got = _quality_rows(settings.results_db)
    assert sorted((g["model_id"], g["method"], g["run_id"]) for g in got) == sorted(
        [("encoder-x", "encoder", "e"), (second.training.model_id, "hash", second.quality.run_id),
         (second.training.model_id, "random_codes", second.quality.run_id)])
    with duckdb.connect(str(settings.results_db), read_only=True) as con:
        assert con.execute(f"SELECT count(*) FROM {arch.ARCHIVE_TABLE}").fetchone() == (512,)
        assert con.execute(f"SELECT run_id FROM {arch.SUMMARY_TABLE}").fetchall() == [
            (second.archive.run_id,)]
    third = record_hash_quality(second.training.model_path, settings, k=3)
    assert third.k == 3 and len(_quality_rows(settings.results_db)) == 5  # another k: kept


def test_hash_leads_only_above_random_codes():
    def run(ours: float, rnd: float) -> HashQualityRun:
        return HashQualityRun("r", "d", "m", "c", 5, (
            HashQuality("hash", 16, 5, 0.5, ours, 10, 2),
            HashQuality("random_codes", 16, 5, 0.5, rnd, 10, 2)), ())

    assert run(0.4, 0.3).hash_leads and not run(0.3, 0.3).hash_leads
