"""`embed_and_record` end to end on the tiny sample: the model, every patch stored once, an
index that covers them, retrieval_quality rows equal to what was measured; a second run
reuses the spent model, leaves the index fresh and replaces the rows."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from ocog_lib import results
from ocog_lib.data.lineage import model_hash
from ocog_lib.embed import store
from ocog_lib.embed.index import index_folder, read_meta
from ocog_lib.embed.pipeline import (
    QUALITY_TABLE,
    QualityRun,
    embed_and_record,
    ensure_sample,
    record_quality,
)
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings
from tests.ocog_lib.embed.test_train import TINY

CFG = dataclasses.replace(TINY, steps=4, max_val_patches=128)


@pytest.fixture(scope="module")
def settings(train_variants, tmp_path_factory) -> Settings:
    root = tmp_path_factory.mktemp("pipeline")
    (root / "data").mkdir()
    (root / "data" / "variants").symlink_to(train_variants.data_dir / "variants")
    return Settings(data_dir=root / "data", results_db=root / "ocog.duckdb")


@pytest.fixture(scope="module")
def run(settings):
    torch.set_num_threads(2)
    events = []
    r = embed_and_record(CFG, settings, progress=events.append)
    stages = [e["stage"] for e in events if e["event"] == "stage"]
    assert stages == ["train", "embed", "index", "quality"]  # the sample's files exist
    return r


def test_every_patch_stored_and_indexed(run, settings):
    es, ix = run.embeddings, run.index
    assert run.prepared == () and run.encoder.steps == 4 and run.encoder.trained
    assert (es.dataset, es.model_id) == ("sample", run.encoder.model_id)
    assert es.rows == len(es.embeddings) == 2 * 16 * 16 and es.dim == CFG.dim
    assert es.h3_resolution == 8  # 10 m x 32 px: resolution 8 (h3cells.resolution_for)
    assert es.labelled == int((es.embeddings.labels >= 0).sum()) > 0
    stored, back = store.load_embeddings(settings.results_db, "sample", es.model_id)
    assert stored.rows == es.rows and stored.fingerprint == es.fingerprint
    np.testing.assert_array_equal(back.vectors, es.embeddings.vectors)
    np.testing.assert_array_equal(back.cells, es.embeddings.cells)
    meta = read_meta(index_folder(settings.results_db, "sample", es.model_id))
    assert (ix.action, ix.rows, meta.rows, meta.fingerprint) == ("built", es.rows, es.rows,
                                                                 es.fingerprint)
    assert ix.path.name == meta.file and ix.bytes == ix.path.stat().st_size > 0


def test_quality_rows_are_what_was_measured(run, settings):
    q = run.quality
    assert [r.method for r in q.results] == ["encoder", "random_projection", "band_stats"]
    cols, rows = results.query(settings.results_db, f"SELECT * FROM {QUALITY_TABLE} "
                               "ORDER BY baseline, method DESC")  # fmt: skip
    got = [dict(zip(cols, r, strict=True)) for r in rows]
    assert [g["method"] for g in got] == ["encoder", "random_projection", "band_stats"]
    for g, r in zip(got, q.results, strict=True):
        assert (g["run_id"], g["dataset"], g["model_id"]) == (q.run_id, "sample", r.model_id)
        assert (g["dim"], g["k"], g["n_queries"], g["baseline"]) == (
            r.dim, r.k, r.n_queries, r.method != "encoder")
        assert (g["precision_at_k"], g["map_at_k"]) == (r.precision_at_k, r.map_at_k)
        assert json.loads(g["config"])["steps"] == 4 and g["git_sha"] is not None
        assert json.loads(g["host"])["cores"] >= 1
        assert g["content_hash"] == model_hash(run.encoder.model_path) is not None  # lineage
    assert q.encoder_leads == (q.results[0].map_at_k > max(r.map_at_k for r in q.results[1:]))


def test_a_second_run_reuses_the_model_and_replaces_the_rows(run, settings):
    again = embed_and_record(CFG, settings)
    assert (again.encoder.trained, again.encoder.model_id) == (False, run.encoder.model_id)
    assert again.embeddings.fingerprint == run.embeddings.fingerprint  # the same vectors
    assert again.index.action == "loaded" and again.index.path == run.index.path
    _, rows = results.query(settings.results_db, f"SELECT DISTINCT run_id, k FROM {QUALITY_TABLE}")
    assert rows == [(again.quality.run_id, 10)]
    assert [r.map_at_k for r in again.quality.results] == [r.map_at_k for r in run.quality.results]
    # another k is another measurement, kept beside it
    other = record_quality(run.encoder.model_path, settings, k=3, device="cpu")
    _, rows = results.query(settings.results_db, f"SELECT k, count(*) FROM {QUALITY_TABLE} "
                            "GROUP BY k ORDER BY k")  # fmt: skip
    assert rows == [(3, 3), (10, 3)] and other.k == 3


def test_other_datasets_are_not_prepared_here(settings, tmp_path):
    empty = Settings(data_dir=tmp_path / "data", results_db=tmp_path / "r.duckdb")
    assert ensure_sample("vaihingen", "optimal_local", empty) == ()
    assert ensure_sample("sample", "optimal_local", settings) == ()  # written already
    with pytest.raises(InputError, match=r"cog_variants\[vaihingen\|optimal_local\]"):
        embed_and_record(dataclasses.replace(CFG, dataset="vaihingen"), empty)
    with pytest.raises(InputError, match="variant 'nope'"):
        ensure_sample("sample", "nope", empty)  # refused before anything is written
    assert not (tmp_path / "data").exists()


def test_encoder_leads_only_above_every_baseline():
    def q(*maps):
        rows = tuple({"method": m, "baseline": m != "encoder", "map_at_k": v}
                     for m, v in zip(("encoder", "random_projection", "band_stats"), maps,
                                     strict=False))  # fmt: skip
        return QualityRun("r", "sample", "m", 10, (), rows)

    assert q(0.9, 0.5, 0.8).encoder_leads
    assert not q(0.8, 0.5, 0.8).encoder_leads and not q(0.7, 0.9, 0.1).encoder_leads
    assert not QualityRun("r", "sample", "m", 10, (), ()).encoder_leads
