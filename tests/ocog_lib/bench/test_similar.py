"""`bench similar` on small sizes: exact ground truth, recall, every method's row, and the
rows in similar_benchmarks."""

from __future__ import annotations

import numpy as np
import pytest

from ocog_lib import results
from ocog_lib.bench import similar as bs
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings


def test_unit_vectors_are_seeded_unit_rows():
    v = bs.unit_vectors(2500, 16, seed=3)
    assert v.dtype == np.float32 and v.shape == (2500, 16)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(v, bs.unit_vectors(2500, 16, seed=3))


def test_blocked_top_k_equals_a_full_sort(monkeypatch):
    monkeypatch.setattr(bs, "_CHUNK", 700)  # several blocks, one of them short
    v, q = bs.unit_vectors(3000, 16, 0), bs.unit_vectors(25, 16, 1)
    truth = np.argsort(-(q @ v.T), axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(bs.exact_top_k(v, q, 10), truth)
    assert bs.recall(truth, truth) == 1.0
    assert bs.recall(truth[:, ::-1], truth) == 1.0 and bs.recall(truth + 1, truth) < 0.1


def test_bench_rows_for_every_method_and_size(tmp_path):
    cfg = bs.SimilarBenchConfig(sizes=(1000, 4000), queries=40, exact_queries=4,
                                methods=("hnsw", "duckdb", "numpy"), threads=1)  # fmt: skip
    result = bs.bench_similar(cfg)
    assert [(r.method, r.n) for r in result.rows] == [
        (m, n) for n in (1000, 4000) for m in ("hnsw", "duckdb", "numpy")]
    for r in result.rows:
        assert r.p50_ms > 0 and r.p95_ms >= r.p50_ms and r.index_bytes > 0
        if r.method == "hnsw":
            curve = r.extra["recall_curve"]
            assert r.recall_at_10 == curve[str(r.expansion_search)]
            assert r.recall_at_10 >= cfg.target_recall or r.expansion_search == bs.EF_STEPS[-1]
            assert r.connectivity == 16 and r.expansion_add == 64 and r.queries == 40
        else:
            assert r.recall_at_10 == 1.0 and r.queries == 4  # exact methods
    text = bs.format_similar_bench(result)
    assert "recall@10" in text and "(6 rows)" in text
    settings = Settings(data_dir=tmp_path, results_db=tmp_path / "r.duckdb")
    assert bs.record_similar(result, settings) == 6
    _, rows = results.query(settings.results_db, "SELECT method, n, recall_at_10, "
                            "config->>'$.sizes' FROM similar_benchmarks ORDER BY n, method")
    assert [(m, n) for m, n, *_ in rows] == [
        (m, n) for n in (1000, 4000) for m in ("duckdb", "hnsw", "numpy")]


@pytest.mark.parametrize("kw, what", [({"sizes": ()}, "sizes"), ({"k": 0}, "k 0"),
                                      ({"sizes": (5,)}, "k 10"), ({"methods": ("faiss",)},
                                                                  "methods"),
                                      ({"target_recall": 1.5}, "target_recall"),
                                      ({"connectivity": 1}, "connectivity")])  # fmt: skip
def test_config_names_a_bad_setting(kw, what):
    with pytest.raises(InputError, match=what):
        bs.SimilarBenchConfig(**kw)
