"""find_similar: the query patch, exact and HNSW search against numpy per cell, the
radius and time filters, and every refusal naming its input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ocog_lib.embed import index as ix
from ocog_lib.embed import similar as sim
from ocog_lib.embed import store
from ocog_lib.embed.vectors import EmbeddingSet
from ocog_lib.errors import InputError
from tests.support.embedsets import grid_set, per_cell_exact

CFG = ix.HnswConfig(connectivity=16, expansion_add=128, expansion_search=256, threads=1)
CLASSES = {0: "water", 1: "vegetation", 2: "bare_soil", 3: "built_up"}


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory):
    """Two datasets far apart; `sample` at two times (the second in other vectors)."""
    db = tmp_path_factory.mktemp("similar") / "r.duckdb"
    a = grid_set(14, 16, seed=1)
    b = grid_set(14, 16, seed=2, time="2024-08-01T10:00:00")
    store.write_embeddings(db, "sample", "m", EmbeddingSet.concat([a, b]))
    store.write_embeddings(db, "far", "m2", grid_set(6, 16, seed=3, lon0=10.0, lat0=50.0))
    return db, EmbeddingSet.concat([a, b])


def _query(**kw) -> sim.SimilarQuery:
    return sim.SimilarQuery(**({"lon": -77.0, "lat": 38.9, "k": 8} | kw))


def test_the_query_patch_is_the_nearest_centre_and_exact_matches_numpy(sample_db):
    db, es = sample_db
    res = sim.find_similar(db, _query(exact=True, dataset="sample"), classes=CLASSES)
    d = np.hypot((es.lon - -77.0) * math.cos(math.radians(38.9)), es.lat - 38.9)
    nearest = int(np.argmin(d))  # the first of the two times at that centre
    q = res.query_patch
    assert (q.lon, q.lat, q.time) == (es.lon[nearest], es.lat[nearest], "2024-05-01T10:00:00")
    import h3

    cell = h3.str_to_int(q.cell)
    assert cell == int(es.cells[nearest])
    truth = per_cell_exact(es, es.vectors[nearest], cell, 8)
    assert [h3.str_to_int(m.cell) for m in res.matches] == [c for c, _ in truth]
    np.testing.assert_allclose([m.score for m in res.matches], [s for _, s in truth], atol=1e-5)
    assert res.method == "exact" and res.rows == len(es) and res.dim == 16
    assert all(m.label_name == CLASSES.get(m.label) for m in res.matches)


def test_hnsw_answers_the_same_cells_as_exact_search(sample_db, tmp_path):
    db, _ = sample_db
    exact = sim.find_similar(db, _query(k=10, exact=True))
    approx = sim.find_similar(db, _query(k=10), config=CFG)
    assert approx.method == "hnsw" and approx.index in ("built", "loaded")
    assert [m.cell for m in approx.matches] == [m.cell for m in exact.matches]
    np.testing.assert_allclose([m.score for m in approx.matches],
                               [m.score for m in exact.matches], atol=1e-5)  # fmt: skip
    assert len({m.cell for m in approx.matches}) == 10
    assert approx.query_patch.cell not in {m.cell for m in approx.matches}


def test_dataset_is_the_one_covering_the_point(sample_db):
    db, _ = sample_db
    res = sim.find_similar(db, sim.SimilarQuery(lon=10.02, lat=50.02, k=3, exact=True))
    assert (res.dataset, res.model_id) == ("far", "m2") and len(res.matches) == 3


def test_within_km_keeps_results_inside_the_radius(sample_db):
    db, es = sample_db
    res = sim.find_similar(db, _query(k=50, within_km=3.0))
    assert res.method == "exact-within" and res.matches
    assert max(m.distance_km for m in res.matches) <= 3.0
    wide = sim.find_similar(db, _query(k=50, exact=True))
    inside = [m.cell for m in wide.matches if m.distance_km <= 3.0]
    assert [m.cell for m in res.matches][: len(inside)] == inside


def test_time_picks_the_query_patch_and_an_unknown_time_is_named(sample_db):
    db, es = sample_db
    later = sim.find_similar(db, _query(time="2024-08-01", exact=True))
    assert later.query_patch.time == "2024-08-01T10:00:00"
    at = sim.find_similar(db, _query(time="2024-08-01T10:00:00", exact=True))
    assert at.query_patch == later.query_patch
    with pytest.raises(sim.UnknownTime, match=r"time '2023-01-01'.*2024-05-01T10:00:00"):
        sim.find_similar(db, _query(time="2023-01-01"))
    with pytest.raises(InputError, match="not an ISO 8601"):
        _query(time="yesterday")


def test_a_point_outside_every_dataset_is_refused(sample_db):
    db, _ = sample_db
    with pytest.raises(sim.OutsideData, match=r"lon=0 lat=0.*outside every dataset.*sample"):
        sim.find_similar(db, sim.SimilarQuery(lon=0.0, lat=0.0))
    with pytest.raises(sim.OutsideData, match="far: nearest patch"):
        sim.find_similar(db, sim.SimilarQuery(lon=-77.0, lat=38.9, dataset="far"))


@pytest.mark.parametrize("k", [0, -1, sim.MAX_K + 1, 2.5, True])
def test_k_outside_its_range_is_named(k):
    with pytest.raises(InputError, match=rf"k {k!r}: must be an integer in 1..{sim.MAX_K}"):
        _query(k=k)


@pytest.mark.parametrize("kw, what", [({"lon": 200.0}, "lon 200.0"), ({"lat": math.nan}, "lat"),
                                      ({"within_km": 0.0}, "within_km 0.0")])
def test_bad_coordinates_and_radius_are_named(kw, what):
    with pytest.raises(InputError, match=what):
        _query(**kw)


def test_no_embeddings_yet_is_named(tmp_path, sample_db):
    with pytest.raises(store.NoEmbeddings, match="no results file"):
        sim.find_similar(tmp_path / "none.duckdb", _query())
    from ocog_lib import results

    results.write_rows(tmp_path / "empty.duckdb", "similar_benchmarks", [])
    with pytest.raises(store.NoEmbeddings, match="no embeddings yet"):
        sim.find_similar(tmp_path / "empty.duckdb", _query())
    with pytest.raises(store.NoEmbeddings, match="dataset 'nowhere'"):
        sim.find_similar(sample_db[0], _query(dataset="nowhere"))


def test_new_embeddings_rebuild_the_index_or_are_refused(tmp_path):
    db = tmp_path / "r.duckdb"
    store.write_embeddings(db, "sample", "m", grid_set(8, 16, seed=1))
    cache = ix.IndexCache()
    first = sim.find_similar(db, _query(k=5), config=CFG, cache=cache)
    assert first.index == "built"
    assert sim.find_similar(db, _query(k=5), config=CFG, cache=cache).index == "cached"
    store.write_embeddings(db, "sample", "m", grid_set(8, 16, seed=5))
    with pytest.raises(ix.StaleIndex, match="older than its embeddings"):
        sim.find_similar(db, _query(k=5), on_stale="refuse")
    again = sim.find_similar(db, _query(k=5), config=CFG, cache=cache)
    exact = sim.find_similar(db, _query(k=5, exact=True))
    assert again.index == "rebuilt"
    assert [m.cell for m in again.matches] == [m.cell for m in exact.matches]


def test_format_and_names(sample_db):
    db, _ = sample_db
    res = sim.name_labels(sim.find_similar(db, _query(k=3, exact=True)), CLASSES)
    text = sim.format_similar(res)
    assert "query patch: cell" in text and "(3 rows)" in text
    assert all(m.cell in text for m in res.matches)
    assert res.to_dict()["matches"][0]["cell"] == res.matches[0].cell
