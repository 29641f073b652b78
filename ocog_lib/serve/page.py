"""The map page of `ocog serve`: `/` (the page), `/static/...` (its JS and CSS and a vendored
Leaflet: nothing comes from a CDN, so it works offline), `/info` (what the page needs to know
of the stack) and `/stretch` (one colour stretch for every tile of a view).

A PNG tile's colours depend on its `rescale`; a stretch taken per tile would give one value
different colours on neighbouring tiles. So the page asks `/stretch` once per view (the 2nd
and 98th percentiles of the reduced expression over the view, read at low resolution through
the cube's `read_bbox`, NaN and infinities left out) and draws every tile with it.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from ocog_lib.cube.reads import read_bbox
from ocog_lib.cube.reducers import REDUCERS
from ocog_lib.cube.sources import raster_info
from ocog_lib.cube.stack import SceneStack
from ocog_lib.cube.zooms import finest_zoom, overview_levels
from ocog_lib.serve.colormaps import COLORMAPS, colormap_table
from ocog_lib.serve.config import DEFAULT_EXPRESSION, DEFAULT_RESCALE
from ocog_lib.serve.export import parse_bbox
from ocog_lib.serve.params import TileQuery
from ocog_lib.serve.service import TileService

STATIC = Path(__file__).parent / "static"
TMS = "WebMercatorQuad"  # the page's tiles (Leaflet's default CRS)
STRETCH_PERCENTILES = (2.0, 98.0)
STRETCH_PIXELS = 256  # the longer edge of the stretch's read, at most (never finer than native)
STRETCH_DIGITS = 4  # significant digits of the rescale the page puts in tile URLs
LEGEND_STOPS = 11  # colours of each colormap the page's legend draws
COARSER_ZOOMS = 3  # zooms the page allows past the coarsest overview's (the stack a few px)
MAX_LAT = 85.0511287798  # Web Mercator's edge


@dataclass(frozen=True)
class Footprint:
    """Where a stack's scenes lie: the union of their first band's bounds."""

    crs: str  # the first scene's
    bounds: tuple[float, float, float, float]  # left, bottom, right, top in `crs`
    lonlat: tuple[float, float, float, float]  # west, south, east, north
    resolution: float  # the finest native pixel size, `crs` units


@dataclass(frozen=True)
class Stretch:
    rescale: tuple[float, float] | None  # None: no valid value in the view (see `why`)
    values: tuple[float, float] | None  # the percentiles themselves, before rounding
    pixels: int  # finite values the percentiles are of
    bbox: tuple[float, float, float, float] | None  # what was read, in `crs`
    crs: str
    resolution: float | None
    width: int
    height: int
    scenes: tuple[str, ...]
    why: str | None = None

    def body(self) -> dict:
        return {"rescale": self.rescale, "values": self.values,
                "percentiles": STRETCH_PERCENTILES, "pixels": self.pixels, "bbox": self.bbox,
                "crs": self.crs, "resolution": self.resolution, "width": self.width,
                "height": self.height, "scenes": list(self.scenes), "why": self.why}  # fmt: skip


def add_page_routes(app, service: TileService, runner, tile_query: Callable[..., TileQuery],
                    error_response: Callable[..., Any]) -> None:  # fmt: skip
    """`/`, `/static`, `/info` and `/stretch` on `app`. create_app passes its query parser
    (the tiles' parameters, checked as for a tile) and its JSON error reply, so this module
    does not import app.py (which imports it)."""
    from fastapi import Depends, Query
    from fastapi.responses import FileResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles

    # evaluated here: no `from __future__ import annotations`, so FastAPI sees the type
    query_type = Annotated[TileQuery, Depends(tile_query)]
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    known: dict[str, dict] = {}

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/info", summary="the stack as the map page needs it")
    async def info():
        """Bounds (lon/lat), dates, bands, zooms, reducers and colormaps (legend colours)."""
        try:
            if "info" not in known:
                known["info"] = await runner.run(stack_info, service)
        except Exception as exc:  # noqa: BLE001 - every failure answers as JSON
            return error_response(exc, service.sources)
        return known["info"]

    @app.get("/stretch", summary="one colour stretch for every tile of a view")
    async def stretch(query: query_type, bbox: str = Query(..., description="the view, "
                      "west,south,east,north in lon/lat")):  # fmt: skip
        """The 2nd and 98th percentiles of the reduced expression over the view (NaN = no
        data left out), `rescale` rounded for tile URLs; null with `why` when none."""
        t0 = time.perf_counter()
        try:
            view = parse_bbox(bbox, "EPSG:4326", None).bbox
            service.expression(query.expression)
            service.check_reducer(query)
            chosen = service.selection(query)
            done = await runner.run(view_stretch, chosen, query, view)
        except Exception as exc:  # noqa: BLE001
            return error_response(exc, service.sources)
        return JSONResponse(done.body(), headers={"X-Compute-Ms":
                            f"{(time.perf_counter() - t0) * 1e3:.1f}"})  # fmt: skip


def stack_info(service: TileService) -> dict:
    """What `/info` answers (header reads only)."""
    stack = service.stack
    foot = footprint(stack)
    finest = finest_zoom(stack, TMS)
    coarsest = max(0, finest - overview_levels(stack) - COARSER_ZOOMS)
    scenes = [{"id": s.id, "datetime": s.datetime.isoformat().replace("+00:00", "Z"),
               "cloud_cover": s.cloud_cover} for s in stack.scenes]  # fmt: skip
    return {"stack": stack.name, "bands": list(stack.bands), "aliases": stack.aliases,
            "scenes": scenes, "bounds": foot.lonlat, "tms": TMS, "minzoom": coarsest,
            "finest_zoom": finest, "maxzoom": finest + service.config.max_overzoom,
            "tile_size": service.config.tile_size, "reducers": list(REDUCERS),
            "colormaps": {name: _stops(name) for name in COLORMAPS},
            "default_expression": DEFAULT_EXPRESSION,
            "default_rescale": DEFAULT_RESCALE}  # fmt: skip


def _stops(name: str) -> list[str]:
    table = colormap_table(name)
    picks = np.linspace(0, len(table) - 1, LEGEND_STOPS).round().astype(int)
    return ["#{:02x}{:02x}{:02x}".format(*table[i][:3]) for i in picks]


def footprint(stack: SceneStack) -> Footprint:
    """The union of the scenes' first-band bounds, in the first scene's CRS and in lon/lat."""
    from rasterio.warp import transform_bounds

    band = stack.bands[0]
    infos = [raster_info(stack.uri(s, band)) for s in stack.scenes if band in s.assets]
    crs = infos[0].crs
    boxes, res = [], math.inf
    for info in infos:
        g = info.geometry
        box = _bounds(g.transform, g.width, g.height)
        boxes.append(box if g.crs == crs else transform_bounds(g.crs, crs, *box, densify_pts=21))
        res = min(res, abs(g.transform.a), abs(g.transform.e))
    bounds = (min(b[0] for b in boxes), min(b[1] for b in boxes),
              max(b[2] for b in boxes), max(b[3] for b in boxes))  # fmt: skip
    lonlat = transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21)
    return Footprint(crs, bounds, tuple(float(v) for v in lonlat), float(res))


def _bounds(transform, width: int, height: int) -> tuple[float, float, float, float]:
    x0, y0 = transform * (0, 0)
    x1, y1 = transform * (width, height)
    return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def _overlap(a, b) -> tuple[float, float, float, float] | None:
    box = (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    return box if box[0] < box[2] and box[1] < box[3] else None


def view_stretch(chosen: SceneStack, query: TileQuery,
                 view: tuple[float, float, float, float]) -> Stretch:  # fmt: skip
    """The stretch of `view` (lon/lat; clamped to Web Mercator's world) over the selected
    scenes: the view's part over the scenes, read at <= STRETCH_PIXELS a side."""
    from rasterio.warp import transform_bounds

    foot = footprint(chosen)
    world = (max(view[0], -180.0), max(view[1], -MAX_LAT), min(view[2], 180.0),
             min(view[3], MAX_LAT))  # fmt: skip
    over = _overlap(world, foot.lonlat)
    if over is not None:
        over = _overlap(transform_bounds("EPSG:4326", foot.crs, *over, densify_pts=21),
                        foot.bounds)  # fmt: skip
    if over is None:
        return Stretch(None, None, 0, None, foot.crs, None, 0, 0, (),
                       why="the view does not overlap the selected scenes")  # fmt: skip
    res = max(foot.resolution, max(over[2] - over[0], over[3] - over[1]) / STRETCH_PIXELS)
    cube = read_bbox(chosen, over, crs=foot.crs, resolution=res, expression=query.expression,
                     reducer=query.reducer, p=query.p, resampling=query.resampling,
                     start=query.start, end=query.end, max_cloud=query.max_cloud)  # fmt: skip
    h, w = cube.data.shape
    values = cube.data[np.isfinite(cube.data)].astype(np.float64)
    common = dict(bbox=tuple(float(v) for v in over), crs=foot.crs, resolution=float(res),
                  width=w, height=h, scenes=cube.scenes)  # fmt: skip
    if values.size == 0:
        return Stretch(None, None, 0, **common, why=f"no valid value in the view's {w} x {h} "
                       f"px: all no data, masked or not finite ({query.reducer} of "
                       f"{query.expression})")  # fmt: skip
    lo, hi = (float(v) for v in np.percentile(values, STRETCH_PERCENTILES))
    return Stretch(_rounded(lo, hi), (lo, hi), int(values.size), **common)


def _rounded(lo: float, hi: float) -> tuple[float, float]:
    """The percentiles to STRETCH_DIGITS significant digits, widened when they meet (a flat
    view: the tile endpoint needs min < max)."""
    lo, hi = (float(f"{v:.{STRETCH_DIGITS}g}") for v in (lo, hi))
    if hi <= lo:
        pad = max(abs(lo), 1.0) * 10.0 ** -(STRETCH_DIGITS - 1)
        lo, hi = lo - pad, hi + pad
    return lo, hi
