"""`/similar`: find places like a point, as JSON (or GeoJSON hexagons, `/similar.geojson`,
which the map page draws), over the results file's embeddings.

The same call as `ocog similar` (`embed.similar.find_similar`), run in the thread pool;
loaded HNSW indexes are kept per set (`embed.index.IndexCache`) and checked against the
set on every request, so a request after new embeddings extends or rebuilds the index,
never answers from an old one. Errors are the server's JSON {"error", "input", "cause"}:
400 a value that does not parse, 422 one out of range (k, lon, lat, within_km), 404 no
embeddings / a point outside every dataset / a time with no patch, 409 a stale index the
request refused to rebuild (rebuild=false).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ocog_lib.embed.cellshapes import similar_geojson
from ocog_lib.embed.index import IndexCache, StaleIndex
from ocog_lib.embed.similar import (
    MAX_K,
    OutsideData,
    SimilarQuery,
    SimilarResult,
    UnknownTime,
    dataset_classes,
    find_similar,
    name_labels,
)
from ocog_lib.embed.store import NoEmbeddings
from ocog_lib.errors import InputError
from ocog_lib.serve.errors import ApiError, reply_for
from ocog_lib.serve.params import parse_number
from ocog_lib.settings import Settings

log = logging.getLogger("ocog.serve")

_KINDS = (
    (NoEmbeddings, 404, "no embeddings"),
    (OutsideData, 404, "outside the data"),
    (UnknownTime, 404, "unknown time"),
    (StaleIndex, 409, "stale index"),
)


def add_similar_routes(app: FastAPI, db_path: str | Path | None = None) -> None:
    """GET /similar (JSON) and /similar.geojson (the cells as hexagons, for a map) on `app`;
    `db_path` None: $OCOG_DUCKDB (read per request)."""
    cache = IndexCache()

    async def answer(lon: str, lat: str, k: str, time: str | None, within_km: str | None,
                     dataset: str | None, model: str | None, exact: bool,
                     rebuild: bool) -> SimilarResult:  # fmt: skip
        query = _query(lon, lat, k, time, within_km, dataset, model, exact)
        settings = Settings.from_env()
        result = await run_in_threadpool(
            find_similar, db_path or settings.results_db, query, cache=cache,
            on_stale="rebuild" if rebuild else "refuse")  # fmt: skip
        return name_labels(result, dataset_classes(settings.data_dir, result.dataset))

    def route(path: str, summary: str, render: Callable[[SimilarResult], dict]) -> None:
        async def similar(
            lon: str = Query(..., description="longitude, degrees"),
            lat: str = Query(..., description="latitude, degrees"),
            k: str = Query("10", description=f"cells to return, 1..{MAX_K}"),
            time: str | None = Query(None, description="the query patch's time: ISO date "
                                     "or datetime, UTC (default: any)"),  # fmt: skip
            within_km: str | None = Query(None, description="only results this close (exact)"),
            dataset: str | None = Query(None, description="default: the one covering the point"),
            model: str | None = Query(None, description="model_id (default: the newest)"),
            exact: bool = Query(False, description="exact search in DuckDB"),
            rebuild: bool = Query(True, description="rebuild a stale index (false: 409)"),
        ) -> JSONResponse:
            try:
                result = await answer(lon, lat, k, time, within_km, dataset, model, exact,
                                      rebuild)  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - every failure answers as JSON
                return similar_error(exc)
            return JSONResponse(render(result), media_type=_MEDIA[path])

        app.add_api_route(path, similar, methods=["GET"], summary=summary,
                          response_class=JSONResponse)  # fmt: skip

    route("/similar", "the k H3 cells most similar to the patch at a point: {query, dataset, "
          "model_id, dim, rows, method, index, query_patch, matches}", SimilarResult.to_dict)
    route("/similar.geojson", "the same answer as a GeoJSON FeatureCollection of hexagons "
          "(the query's cell, rank 0, then the matches)", similar_geojson)


_MEDIA = {"/similar": "application/json", "/similar.geojson": "application/geo+json"}


def _query(lon: str, lat: str, k: str, time: str | None, within_km: str | None,
           dataset: str | None, model: str | None, exact: bool) -> SimilarQuery:  # fmt: skip
    try:
        count = int(k)
    except ValueError:
        raise ApiError(f"k={k}", "not an integer", status=400, error="bad number") from None
    try:
        return SimilarQuery(
            lon=parse_number("lon", lon, -180, 180), lat=parse_number("lat", lat, -90, 90),
            k=count, time=time or None, within_km=parse_number("within_km", within_km, 0, 4e4),
            dataset=dataset or None, model_id=model or None, exact=exact)  # fmt: skip
    except ApiError:
        raise
    except InputError as exc:
        status = 400 if str(exc.what).startswith("time") else 422
        raise ApiError(exc.what, exc.cause, status=status, error="invalid input") from None


def similar_error(exc: BaseException) -> JSONResponse:
    """The status and JSON body for a /similar failure."""
    for kind, status, error in _KINDS:
        if isinstance(exc, kind):
            return JSONResponse({"error": error, "input": exc.what, "cause": exc.cause},
                                status_code=status)  # fmt: skip
    reply = reply_for(exc)
    if reply.status >= 500:
        log.error("%s: %s", reply.body["error"], reply.body, exc_info=reply.status == 500)
    return JSONResponse(reply.body, status_code=reply.status)
