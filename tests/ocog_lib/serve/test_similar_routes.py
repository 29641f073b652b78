"""GET /similar through the ASGI app: JSON answers, and every refusal as the server's
{"error", "input", "cause"} with its status."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlencode

import pytest
from fastapi import FastAPI

from ocog_lib.embed import store
from ocog_lib.serve.similar_routes import add_similar_routes
from tests.support.embedsets import grid_set

POINT = {"lon": "-77.0", "lat": "38.9"}


def _get(app: FastAPI, path: str, **params) -> tuple[int, dict]:
    """One GET through the app's ASGI interface (no server, no HTTP client)."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": urlencode(params).encode(), "headers": [], "root_path": "",
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}  # fmt: skip
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body)


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> FastAPI:
    db = tmp_path_factory.mktemp("similar_routes") / "r.duckdb"
    store.write_embeddings(db, "sample", "m", grid_set(10, 16, seed=1))
    app = FastAPI()
    add_similar_routes(app, db)
    return app


def test_similar_answers_json_and_reuses_its_index(app):
    status, doc = _get(app, "/similar", **POINT, k="5")
    assert status == 200, doc
    assert doc["dataset"] == "sample" and doc["index"] == "built" and len(doc["matches"]) == 5
    assert {"cell", "score", "label", "lon", "lat", "distance_km"} <= set(doc["matches"][0])
    status, again = _get(app, "/similar", **POINT, k="5")
    assert again["index"] == "cached" and again["matches"] == doc["matches"]
    status, exact = _get(app, "/similar", **POINT, k="5", exact="true")
    assert exact["method"] == "exact"
    assert [m["cell"] for m in exact["matches"]] == [m["cell"] for m in doc["matches"]]


@pytest.mark.parametrize("params, status, error, what", [
    ({"k": "0"}, 422, "invalid input", "k 0"),
    ({"k": "100000"}, 422, "invalid input", "k 100000"),
    ({"k": "ten"}, 400, "bad number", "k=ten"),
    ({"lon": "500"}, 422, "bad number", "lon=500"),
    ({"lon": "5", "lat": "5"}, 404, "outside the data", "point lon=5 lat=5"),
    ({"time": "1999-01-01"}, 404, "unknown time", "time '1999-01-01'"),
    ({"time": "soon"}, 400, "invalid input", "time 'soon'"),
    ({"dataset": "nowhere"}, 404, "no embeddings", "dataset 'nowhere'"),
])  # fmt: skip
def test_refusals_name_the_input(app, params, status, error, what):
    got, doc = _get(app, "/similar", **(POINT | params))
    assert (got, doc["error"], doc["input"]) == (status, error, what), doc
    assert doc["cause"]


def test_a_stale_index_is_409_when_rebuilding_is_refused(tmp_path):
    db = tmp_path / "r.duckdb"
    store.write_embeddings(db, "sample", "m", grid_set(6, 16, seed=1))
    app = FastAPI()
    add_similar_routes(app, db)
    assert _get(app, "/similar", **POINT)[0] == 200
    store.write_embeddings(db, "sample", "m", grid_set(6, 16, seed=2))
    status, doc = _get(app, "/similar", **POINT, rebuild="false")
    assert status == 409 and doc["error"] == "stale index"
    assert "older than its embeddings" in doc["cause"]
    status, doc = _get(app, "/similar", **POINT)
    assert status == 200 and doc["index"] == "rebuilt"


def test_create_app_serves_similar(tmp_path):
    from ocog_lib.data.timestack import build_time_stack
    from ocog_lib.serve.app import create_app

    stack = build_time_stack(tmp_path / "stack", dates=1, size=64)
    assert "/similar" in {getattr(r, "path", None) for r in create_app(stack).routes}


def test_the_geojson_answer_is_the_json_answer_as_h3_hexagons(app):
    import h3

    status, doc = _get(app, "/similar", **POINT, k="7")
    got, geo = _get(app, "/similar.geojson", **POINT, k="7")
    assert (status, got) == (200, 200), geo
    assert geo["type"] == "FeatureCollection" and geo["dataset"] == doc["dataset"]
    query, *matches = geo["features"]
    assert query["properties"]["role"] == "query" and query["id"] == doc["query_patch"]["cell"]
    assert [f["id"] for f in matches] == [m["cell"] for m in doc["matches"]]
    assert [f["properties"]["score"] for f in matches] == [m["score"] for m in doc["matches"]]
    assert [f["properties"]["rank"] for f in matches] == list(range(1, 8))
    for feature in geo["features"]:
        ring = feature["geometry"]["coordinates"][0]
        assert ring[0] == ring[-1] and len(ring) == 7  # a closed hexagon
        assert [(lat, lon) for lon, lat in ring[:-1]] == [
            tuple(p) for p in h3.cell_to_boundary(feature["id"])]


def test_geojson_refusals_are_the_same_json_errors(app):
    got, doc = _get(app, "/similar.geojson", **POINT, k="0")
    assert (got, doc["error"], doc["input"]) == (422, "invalid input", "k 0")
