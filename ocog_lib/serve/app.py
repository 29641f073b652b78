"""`create_app`: the HTTP face of a time stack: XYZ tiles of band math reduced over time,
point time series, the scene selection, health. Pixels are computed per request from the
COGs (nothing is stored); an encoded tile is kept in one bounded cache under its ETag.

Every error is a JSON body {"error", "input", "cause"} (statuses in ocog_lib/serve/errors.py).
A cache hit replays the X-* headers of the computation that made the tile, with X-Cache: hit.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ocog_lib import __version__
from ocog_lib.cube.reducers import REDUCERS
from ocog_lib.cube.stack import SceneStack
from ocog_lib.errors import InputError
from ocog_lib.serve.cache import CachedTile
from ocog_lib.serve.colormaps import COLORMAPS
from ocog_lib.serve.config import DEFAULT_EXPRESSION, ServeConfig
from ocog_lib.serve.errors import ApiError, reply_for
from ocog_lib.serve.export import parse_bbox, plan_export, stream_and_remove, write_export
from ocog_lib.serve.page import add_page_routes
from ocog_lib.serve.params import (
    RESAMPLINGS,
    TileQuery,
    check_choice,
    parse_date,
    parse_number,
    parse_rescale,
)
from ocog_lib.serve.runner import ComputeRunner
from ocog_lib.serve.service import TileService
from ocog_lib.serve.similar_routes import add_similar_routes
from ocog_lib.serve.tiles import TileAddress

log = logging.getLogger("ocog.serve")


def create_app(stack_path: str | os.PathLike[str], *, config: ServeConfig | None = None
               ) -> FastAPI:  # fmt: skip
    """An app over the stack at `stack_path` (a folder or its stack.json), loaded once."""
    config = config or ServeConfig()
    service = TileService(SceneStack.load(Path(stack_path)), config)
    runner = ComputeRunner(service.executor, config.max_concurrent, config.max_queued)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        service.close()

    app = FastAPI(title="ocog serve", version=__version__, lifespan=lifespan,
                  description="On-the-fly band math over a time stack of COGs: XYZ tiles "
                  "reduced over time, point time series, the scene selection, COG exports "
                  "of a box.")  # fmt: skip
    app.state.service = service
    app.state.runner = runner
    _add_error_handlers(app)
    _add_tile_route(app, service, runner)
    _add_data_routes(app, service, runner)
    _add_export_route(app, service, runner)
    add_page_routes(app, service, runner, _tile_query, error_response)  # /, /info, /stretch
    add_similar_routes(app)  # /similar (similar_routes.py)
    return app


def error_response(exc: BaseException, sources: frozenset[str] = frozenset()) -> JSONResponse:
    reply = reply_for(exc, sources)
    if reply.status >= 500:
        log.log(logging.ERROR if reply.status == 500 else logging.WARNING, "%s: %s",
                reply.body["error"], reply.body, exc_info=reply.status == 500)  # fmt: skip
    return JSONResponse(reply.body, status_code=reply.status)


def _add_error_handlers(app: FastAPI) -> None:
    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(exc, request.app.state.service.sources)

    async def on_invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = (exc.errors() or [{}])[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        shown = f"{where}={first.get('input')}" if "input" in first else where
        return JSONResponse({"error": "bad request", "input": shown,
                             "cause": first.get("msg", "invalid")}, status_code=400)  # fmt: skip

    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = "not found" if exc.status_code == 404 else "bad request"
        return JSONResponse({"error": error, "input": request.url.path, "cause": str(exc.detail)},
                            status_code=exc.status_code)  # fmt: skip

    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(InputError, on_error)
    app.add_exception_handler(Exception, on_error)


def _tile_query(
    expression: str = Query(DEFAULT_EXPRESSION, description="band math over band names "
                            "or aliases: + - * / ** & | ~ comparisons where abs sqrt log exp "
                            "clip minimum maximum"),  # fmt: skip
    start: str | None = Query(None, description="first date (ISO 8601), inclusive"),
    end: str | None = Query(None, description="last date (ISO 8601), inclusive"),
    max_cloud: str | None = Query(None, description="highest scene cloud cover, percent"),
    reducer: str = Query("median", description=f"temporal reducer: {', '.join(REDUCERS)}"),
    p: str | None = Query(None, description="percentile for reducer=percentile, 0..100"),
    rescale: str | None = Query(None, description="min,max of the PNG stretch (default "
                                "-1,1 for the default NDVI; required for other expressions)"),
    colormap: str = Query("viridis", description=f"PNG colours: {', '.join(COLORMAPS)}"),
    resampling: str = Query("nearest", description=f"{' | '.join(RESAMPLINGS)}"),
) -> TileQuery:
    query = TileQuery(
        expression=expression, start=parse_date("start", start),
        end=parse_date("end", end, end_of_day=True),
        max_cloud=parse_number("max_cloud", max_cloud, 0, 100), reducer=reducer,
        p=parse_number("p", p, 0, 100), rescale=parse_rescale(rescale),
        colormap=check_choice("colormap", colormap.lower(), COLORMAPS),
        resampling=check_choice("resampling", resampling, RESAMPLINGS),
    )
    if query.start and query.end and query.start > query.end:
        raise ApiError(f"start={start} end={end}", "start is after end", error="bad dates")
    return query


_Query = Annotated[TileQuery, Depends(_tile_query)]


def _add_tile_route(app: FastAPI, service: TileService, runner: ComputeRunner) -> None:
    config = service.config

    @app.get("/tiles/{tms}/{z}/{x}/{y}.{fmt}", summary="one XYZ tile",
             responses={200: {"content": {"image/png": {}, "application/octet-stream": {},
                                          "image/tiff": {}}}})  # fmt: skip
    async def tile(request: Request, tms: str, z: int, x: int, y: int, fmt: str,
                   query: _Query) -> Response:  # fmt: skip
        """png (RGBA, transparent where no data), npy (float32, NaN = no data) or tif."""
        try:
            address = TileAddress.checked(tms, z, x, y, fmt, config.tile_size)
            plan = await run_in_threadpool(service.plan, address, query)
        except Exception as exc:  # noqa: BLE001 - every failure answers as JSON
            return error_response(exc, service.sources)
        etag = f'"{plan.key}"'
        common = {"ETag": etag, "Cache-Control": f"public, max-age={config.max_age_s}"}
        if _matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=common)
        item, state = service.cache.get(plan.key), "hit"
        if item is None:
            try:
                item, state = await runner.once(plan.key, _compute_and_keep, service, plan), "miss"
            except Exception as exc:  # noqa: BLE001
                return error_response(exc, service.sources)
        return Response(item.body, media_type=item.media_type,
                        headers=common | dict(item.headers) | {"X-Cache": state})  # fmt: skip


def _compute_and_keep(service: TileService, plan) -> CachedTile:
    item = service.compute(plan)
    service.cache.put(plan.key, item)
    return item


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag in tags


def _add_data_routes(app: FastAPI, service: TileService, runner: ComputeRunner) -> None:
    @app.get("/point/{lon},{lat}", summary="the expression's time series at one point")
    async def point(lon: str, lat: str, query: _Query):
        """[{scene, datetime, value}], oldest first; value null where masked or no data."""
        t0 = time.perf_counter()
        try:
            where = (parse_number("lon", lon, -180, 180), parse_number("lat", lat, -90, 90))
            rows, n = await runner.run(service.point, *where, query)
        except Exception as exc:  # noqa: BLE001
            return error_response(exc, service.sources)
        return JSONResponse(rows, headers={"X-Scenes": str(n), "X-Compute-Ms":
                                           f"{(time.perf_counter() - t0) * 1e3:.1f}"})

    @app.get("/scenes", summary="what a query selects, and why")
    def scenes(query: _Query) -> dict:
        return service.scenes(query)

    @app.get("/healthz", summary="liveness, the stack and the tile cache")
    async def healthz() -> dict:
        s = service.cache.stats()
        return {"status": "ok", "stack": service.stack.name,
                "scenes": len(service.stack.scenes), "inflight": runner.inflight(),
                "waiting": runner.waiting(),
                "cache": {"entries": s.entries, "bytes": s.bytes, "max_bytes": s.max_bytes,
                          "hits": s.hits, "misses": s.misses}}  # fmt: skip


def _add_export_route(app: FastAPI, service: TileService, runner: ComputeRunner) -> None:
    config = service.config

    @app.get("/export", summary="the reduced cube over a box as a float32 COG",
             responses={200: {"content": {"image/tiff": {}}}})  # fmt: skip
    async def export(query: _Query,
                     bbox: str = Query(..., description="minx,miny,maxx,maxy in bbox_crs"),
                     bbox_crs: str = Query("EPSG:4326", description="the bbox's CRS"),
                     resolution: str | None = Query(None, description="pixel size in the "
                                                    "stack's CRS units (default: native)"),
                     ) -> Response:  # fmt: skip
        """A COG in the stack's CRS (NaN = no data), the cube's `read_bbox` pixels; 413 when
        larger than the server's max_export_pixels."""
        try:
            res = parse_number("resolution", resolution, 1e-9, 1e9)
            box = parse_bbox(bbox, bbox_crs, res)
            expression = service.expression(query.expression)
            service.check_reducer(query)
            chosen = service.selection(query)
            plan = await run_in_threadpool(plan_export, chosen, query, box, expression.bands,
                                           config.max_export_pixels)  # fmt: skip
            done = await runner.run(write_export, plan, service.export_dir)
        except Exception as exc:  # noqa: BLE001 - every failure answers as JSON
            return error_response(exc, service.sources)
        name = f"{service.stack.name}-{query.reducer}.tif"
        headers = {"Content-Disposition": f'attachment; filename="{name}"',
                   "Content-Length": str(done.size), "X-Scenes": str(len(done.scenes)),
                   "X-Compute-Ms": f"{done.compute_ms:.1f}"}  # fmt: skip
        return StreamingResponse(stream_and_remove(done.path), media_type="image/tiff",
                                 headers=headers)  # fmt: skip
