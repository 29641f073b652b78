"""`ocog similar` and `ocog bench similar`: answers with cells, scores and labels; bad
input is one line naming it, exit 1."""

from __future__ import annotations

import json

import pytest

from ocog_lib.cli.main import main
from ocog_lib.embed import store
from tests.support.embedsets import grid_set


@pytest.fixture()
def env(tmp_path, monkeypatch):
    db = tmp_path / "ocog.duckdb"
    monkeypatch.setenv("OCOG_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("OCOG_DUCKDB", str(db))
    return db


@pytest.fixture()
def stored(env):
    store.write_embeddings(env, "sample", "m", grid_set(10, 16, seed=1))
    return env


def test_similar_prints_the_query_cell_and_its_matches(stored, capsys):
    assert main(["similar", "--lon", "-77.0", "--lat", "38.9", "--k", "4"]) == 0
    out = capsys.readouterr().out
    assert "query patch: cell 88" in out and "hnsw, index built" in out and "(4 rows)" in out
    assert main(["similar", "--lon", "-77.0", "--lat", "38.9", "--k", "4", "--exact",
                 "--json"]) == 0  # fmt: skip
    doc = json.loads(capsys.readouterr().out)
    assert doc["method"] == "exact" and len(doc["matches"]) == 4
    assert {"cell", "score", "label", "lon", "lat", "distance_km"} <= set(doc["matches"][0])
    assert doc["query_patch"]["cell"] in out
    assert main(["similar", "--lon", "-77.0", "--lat", "38.9", "--k", "4", "--exact",
                 "--geojson"]) == 0  # fmt: skip
    geo = json.loads(capsys.readouterr().out)
    assert [f["id"] for f in geo["features"]] == [doc["query_patch"]["cell"]] + [
        m["cell"] for m in doc["matches"]]
    assert all(f["geometry"]["type"] == "Polygon" for f in geo["features"])


@pytest.mark.parametrize("argv, says", [
    (["--k", "0"], "k 0: must be an integer in 1..1000"),
    (["--k", "5000"], "k 5000"),
    (["--lon", "5", "--lat", "5"], "lon=5 lat=5: outside every dataset"),
    (["--time", "2020-01-01"], "time '2020-01-01': no patch of sample has it"),
    (["--within-km", "-1"], "within_km -1.0"),
    (["--dataset", "other"], "dataset 'other': no embeddings"),
])  # fmt: skip
def test_bad_input_is_one_error_naming_it(stored, capsys, argv, says):
    base = {"--lon": "-77.0", "--lat": "38.9"}
    args = dict(base, **dict(zip(argv[::2], argv[1::2], strict=True)))
    assert main(["similar", *[x for kv in args.items() for x in kv]]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ocog: error: ") and says in err and err.count("\n") == 1


def test_no_embeddings_yet(env, capsys):
    assert main(["similar", "--lon", "-77.0", "--lat", "38.9"]) == 1
    assert "no embeddings yet" in capsys.readouterr().err


def test_bench_similar_prints_and_records(env, capsys):
    assert main(["bench", "similar", "--sizes", "1e3", "--queries", "20", "--exact-queries",
                 "2", "--methods", "hnsw,numpy", "--threads", "1"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "recall@10" in out and "(table similar_benchmarks)" in out
    assert main(["query", "select method, n from similar_benchmarks order by method",
                 "--json"]) == 0  # fmt: skip
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert rows == [{"method": "hnsw", "n": 1000}, {"method": "numpy", "n": 1000}]


def test_bench_similar_refuses_a_bad_size(env, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "similar", "--sizes", "1e5,lots"])
    assert exc.value.code == 2 and "'lots' is not a number" in capsys.readouterr().err
