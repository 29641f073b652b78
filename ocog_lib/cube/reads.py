"""The cube's reads: a map tile, a point's time series, a box; computed, never stored.

For each selected scene (oldest first) every band the expression reads, and the mask
asset, is read for the view: the overview level GDAL would pick, only the source window
the warp needs (the tiles it touches, decoded once into the process's cache), warped onto
the view's grid as rio-tiler's WarpedVRT would (`plan`, `warp`). Nodata (the file's tag,
else 0, the stack's DN convention) and masked pixels become NaN before the expression;
the expression's (t, h, w) stack is then reduced over time. Masks are always read with
nearest: they are classes, not quantities.

A tile equals rio-tiler's `Reader(path).tile(x, y, z, tilesize=size,
resampling_method=resampling, reproject_method=reproject)` of each file, pixel for pixel
(`tests/ocog_lib/cube/test_reads.py`). Files the fast path cannot decode, and warps with
a kernel other than nearest (`reproject`), are read by GDAL itself (`warp.gdal_read`, a
WarpedVRT as rio-tiler's: the same pixels, slower, their bytes not counted).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import numpy as np
from affine import Affine

from ocog_lib.cube import masks
from ocog_lib.cube.errors import NoScenes, OutsideData, ZoomOutside
from ocog_lib.cube.expression import Expression
from ocog_lib.cube.plan import ReadPlan, View, check_resampling, plan_read, source_window
from ocog_lib.cube.reducers import REDUCERS, reduce
from ocog_lib.cube.sources import (
    RasterInfo,
    WindowRequest,
    raster_info,
    raster_infos,
    read_windows,
)
from ocog_lib.cube.stack import DateLike, Scene, SceneStack
from ocog_lib.cube.warp import gdal_read, warp_window
from ocog_lib.errors import InputError

DN_NODATA = 0  # a band file without a nodata tag: the stack's convention (uint16 DN, 0)
MAX_SOURCE_PIXELS = 4096 * 4096  # one window of one file; beyond, the zoom is too coarse
MAX_VIEW_PIXELS = 8192 * 8192
MAX_CUBE_BYTES = 1 << 30  # float32 values of every scene's view, before the reducer


@dataclass(frozen=True)
class CubeTile:
    data: np.ndarray  # float32 (size, size), NaN = nodata
    scenes: tuple[str, ...]  # the selected scenes that intersect the tile, oldest first
    bytes_fetched: int  # stored bytes of the tiles this read had to fetch
    compute_ms: float


@dataclass(frozen=True)
class PointValue:
    scene_id: str
    datetime: datetime
    value: float | None  # None: outside the scene, nodata or masked


@dataclass(frozen=True)
class CubeArray:
    data: np.ndarray  # float32 (height, width), NaN = nodata
    transform: Affine
    crs: str
    scenes: tuple[str, ...]


@dataclass(frozen=True)
class _Options:
    expression: Expression
    reducer: str
    p: float | None
    resampling: str
    reproject: str


def read_tile(stack: SceneStack, z: int, x: int, y: int, *, expression: str | Expression,
              reducer: str = "median", tms: str = "WebMercatorQuad", size: int = 256,
              resampling: str = "nearest", start: DateLike = None, end: DateLike = None,
              max_cloud: float | None = None, p: float | None = None,
              reproject: str = "nearest") -> CubeTile:  # fmt: skip
    """Tile z/x/y of `tms`: the expression per selected scene, reduced over time.

    `resampling` and `reproject` are rio-tiler's `resampling_method` and
    `reproject_method` (see `ocog_lib.cube.plan`)."""
    t0 = time.perf_counter()
    opts = _options(stack, expression, reducer, p, resampling, reproject)
    chosen = _chosen(stack, start, end, max_cloud)
    view = tile_view(tms, z, x, y, size)
    data, scenes, nbytes = _read_view(chosen, view, opts, f"tile {z}/{x}/{y}")
    return CubeTile(data, scenes, nbytes, (time.perf_counter() - t0) * 1e3)


def read_bbox(stack: SceneStack, bbox: tuple[float, float, float, float], *, crs: str,
              resolution: float | tuple[float, float], expression: str | Expression,
              reducer: str = "median", resampling: str = "nearest",
              start: DateLike = None, end: DateLike = None, max_cloud: float | None = None,
              p: float | None = None, reproject: str = "nearest") -> CubeArray:  # fmt: skip
    """A box (left, bottom, right, top in `crs`) at `resolution` (crs units per pixel),
    reduced over time. The grid starts at (left, top); right and bottom grow to a whole
    number of pixels."""
    opts = _options(stack, expression, reducer, p, resampling, reproject)
    chosen = _chosen(stack, start, end, max_cloud)
    view = bbox_view(bbox, crs, resolution)
    cube = len(chosen.scenes) * view.width * view.height * 4
    if cube > MAX_CUBE_BYTES:
        raise InputError(f"bbox={bbox}", f"{len(chosen.scenes)} scenes x {view.width} x "
                         f"{view.height} px is {cube / 2**30:.1f} GiB of float32, more than "
                         f"{MAX_CUBE_BYTES / 2**30:g} GiB: a smaller box, coarser resolution "
                         "or fewer dates")  # fmt: skip
    data, scenes, _ = _read_view(chosen, view, opts, f"bbox {tuple(bbox)}")
    return CubeArray(data, view.grid.transform, view.crs, scenes)


def read_point(stack: SceneStack, lon: float, lat: float, *, expression: str | Expression,
               start: DateLike = None, end: DateLike = None,
               max_cloud: float | None = None) -> tuple[PointValue, ...]:  # fmt: skip
    """The expression at (lon, lat) (WGS84) in every selected scene, oldest first: the
    full-resolution pixel the point falls in, as rio-tiler's `Reader.point`."""
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in (lon, lat)) or not (
        -180 <= lon <= 180 and -90 <= lat <= 90
    ):
        raise InputError(f"lon={lon} lat={lat}", "need a WGS84 longitude -180..180 and "
                         "latitude -90..90")  # fmt: skip
    expr = _options(stack, expression, "median", None, "nearest", "nearest").expression
    chosen = _chosen(stack, start, end, max_cloud)
    values = _point_values(chosen, expr, lon, lat)
    if all(inside is False for _, inside in values):
        raise OutsideData(f"lon={lon} lat={lat}", f"outside every one of the "
                          f"{len(chosen.scenes)} selected scenes")  # fmt: skip
    return tuple(PointValue(s.id, s.datetime, v) for s, (v, _) in
                 zip(chosen.scenes, values, strict=True))  # fmt: skip


def read_raster(uri: str, view: View, *, band: int = 1, resampling: str = "nearest",
                reproject: str = "nearest", nodata: float | None = None) -> np.ndarray:  # fmt: skip
    """One band of one file over `view` (e.g. `tile_view(...)`), float32 with NaN where
    nodata (the file's, else `nodata`). Equals rio-tiler's read of that band alone; a
    read of every band of a multi-band file at once takes GDAL's whole-file path there
    (`ocog_lib.cube.plan`), which may differ in a few pixels at downsampled zooms."""
    info = raster_info(uri)
    if not (isinstance(band, int) and 1 <= band <= info.bands):
        raise InputError(f"band={band}", f"{info.uri} has bands 1..{info.bands}")
    check_resampling("resampling", resampling)
    check_resampling("reproject", reproject)
    plan = plan_read(info.geometry, view, resampling=resampling, reproject=reproject,
                     whole=info.bands == 1)  # fmt: skip
    fill = info.nodata if info.nodata is not None else nodata
    read = _Read(0, f"band {band}", info, plan, source_window(plan, info.geometry), fill, band)
    (values,), _ = _execute([read])
    return to_float(values, fill)


def tile_view(tms: str, z: int, x: int, y: int, size: int = 256) -> View:
    """Tile z/x/y of a morecantile TileMatrixSet, `size` pixels a side."""
    import morecantile

    label = f"tile {z}/{x}/{y}"
    matrix_set = tile_matrix_set(tms)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (z, x, y, size)):
        raise InputError(label, "z, x, y and size must be integers")
    if not 1 <= size <= 4096:
        raise InputError(f"size={size}", "tile size must be 1..4096 px")
    if not matrix_set.minzoom <= z <= matrix_set.maxzoom:
        raise OutsideData(label, f"zoom {z} is outside {tms}'s zooms "
                          f"{matrix_set.minzoom}..{matrix_set.maxzoom}")  # fmt: skip
    m = matrix_set.matrix(z)
    if not (0 <= x < m.matrixWidth and 0 <= y < m.matrixHeight):
        raise OutsideData(label, f"outside the tile matrix: zoom {z} has {m.matrixWidth} x "
                          f"{m.matrixHeight} tiles")  # fmt: skip
    bounds = matrix_set.xy_bounds(morecantile.Tile(x, y, z))
    crs = matrix_set.rasterio_crs.to_string()
    return View(tuple(float(v) for v in bounds), crs, size, size)


@lru_cache(maxsize=32)
def tile_matrix_set(name: str):
    """A morecantile TileMatrixSet by name (morecantile deep-copies it on every get)."""
    import morecantile

    try:
        return morecantile.tms.get(name)
    except Exception:  # noqa: BLE001 - morecantile's own error type varies by version
        raise InputError(f"tms={name}", "unknown TileMatrixSet; one of "
                         f"{', '.join(morecantile.tms.list())}") from None  # fmt: skip


def bbox_view(bbox, crs, resolution) -> View:
    """A grid from (left, bottom, right, top) in `crs` at `resolution` (x, y or one)."""
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    try:
        name = CRS.from_user_input(crs).to_string()
    except (CRSError, TypeError, ValueError):
        raise InputError(f"crs={crs}", "not a CRS rasterio knows (e.g. EPSG:32618)") from None
    left, bottom, right, top = (float(v) for v in bbox)
    xres, yres = (resolution, resolution) if isinstance(resolution, int | float) else resolution
    if not (xres > 0 and yres > 0 and math.isfinite(xres) and math.isfinite(yres)):
        raise InputError(f"resolution={resolution}", "must be > 0")
    if not (left < right and bottom < top):
        raise InputError(f"bbox={tuple(bbox)}", "need left < right and bottom < top")
    width = max(1, math.ceil((right - left) / xres - 1e-9))
    height = max(1, math.ceil((top - bottom) / yres - 1e-9))
    if width * height > MAX_VIEW_PIXELS:
        raise InputError(f"bbox={tuple(bbox)}", f"{width} x {height} px at {resolution}: "
                         f"more than {MAX_VIEW_PIXELS} px")  # fmt: skip
    bounds = (left, top - height * yres, left + width * xres, top)
    return View(bounds, name, width, height)


def _options(stack: SceneStack, expression, reducer, p, resampling, reproject) -> _Options:
    if isinstance(expression, Expression):
        expr = Expression.parse(expression.text, stack.bands, stack.aliases)
    else:
        expr = Expression.parse(expression, stack.bands, stack.aliases)
    if reducer not in REDUCERS:
        raise InputError(f"reducer={reducer}", f"unknown reducer; one of {', '.join(REDUCERS)}")
    if reducer == "percentile" and (p is None or not 0 <= p <= 100):
        raise InputError(f"p={p!r}", "reducer=percentile needs p in 0..100")
    check_resampling("resampling", resampling)
    check_resampling("reproject", reproject)
    return _Options(expr, reducer, p if reducer == "percentile" else None, resampling, reproject)


def _chosen(stack: SceneStack, start, end, max_cloud) -> SceneStack:
    sel = stack.select(start=start, end=end, max_cloud=max_cloud)
    if not sel.stack.scenes:
        given = {"start": start, "end": end, "max_cloud": max_cloud}
        what = " ".join(f"{k}={_text(v)}" for k, v in given.items() if v is not None)
        raise NoScenes(what or f"stack {stack.name}", f"no scene of stack {stack.name!r} "
                       f"selected ({sel.summary()})")  # fmt: skip
    return sel.stack


def _text(value) -> str:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


@dataclass(frozen=True)
class _Read:
    scene: int  # index into the selection
    asset: str  # band name or the mask asset
    info: RasterInfo
    plan: ReadPlan
    window: tuple[int, int, int, int] | None  # (row0, row1, col0, col1); None: misses
    nodata: float | None
    band: int = 1


def _read_view(chosen: SceneStack, view: View, opts: _Options,
               label: str) -> tuple[np.ndarray, tuple[str, ...], int]:  # fmt: skip
    """(reduced view, scenes that intersect it, bytes fetched) for one view."""
    reads = _plan_reads(chosen, view, opts, label)
    arrays, nbytes = _execute(reads)
    layers, scenes = [], []
    for i, scene in enumerate(chosen.scenes):
        mine = [(r, a) for r, a in zip(reads, arrays, strict=True) if r.scene == i]
        if all(r.window is None for r, _ in mine):
            continue
        scenes.append(scene.id)
        layers.append(_layer(chosen, mine, opts.expression))
    if not scenes:
        raise OutsideData(label, f"outside the data: none of the {len(chosen.scenes)} selected "
                          f"scenes intersects it ({view.crs} bounds {view.bounds})")  # fmt: skip
    data = reduce(np.stack(layers), opts.reducer, opts.p)
    return data, tuple(scenes), nbytes


def _assets(chosen: SceneStack, expr: Expression) -> list[str]:
    return [*expr.bands, *([chosen.mask_asset] if chosen.mask_asset else [])]


def _plan_reads(chosen: SceneStack, view: View, opts: _Options, label: str) -> list[_Read]:
    raster_infos([chosen.uri(s, a) for s in chosen.scenes for a in _assets(chosen,
                                                                           opts.expression)])
    reads = []
    for i, scene in enumerate(chosen.scenes):
        for asset in _assets(chosen, opts.expression):
            info = raster_info(chosen.uri(scene, asset))
            is_mask = asset == chosen.mask_asset and asset not in opts.expression.bands
            resampling, reproject = ("nearest",) * 2 if is_mask else (opts.resampling,
                                                                       opts.reproject)
            plan = plan_read(info.geometry, view, resampling=resampling, reproject=reproject,
                             whole=info.bands == 1)  # fmt: skip
            window = source_window(plan, info.geometry)
            if window is not None and _fast(info, plan):
                n = (window[1] - window[0]) * (window[3] - window[2])
                if n > MAX_SOURCE_PIXELS:
                    raise ZoomOutside(label, f"zoom too coarse for {info.uri}: the view needs "
                                      f"{n} px of level {plan.level} (no coarser overview); "
                                      "zoom in")  # fmt: skip
            nodata = info.nodata if info.nodata is not None or is_mask else DN_NODATA
            reads.append(_Read(i, asset, info, plan, window, nodata))
    return reads


def _execute(reads: list[_Read]) -> tuple[list[np.ndarray], int]:
    """Each read's view in its file's dtype (fast path in one batch), and bytes fetched."""
    fast = [r for r in reads if r.window is not None and _fast(r.info, r.plan)]
    requests = [WindowRequest(r.info, r.plan.level, r.band, r.window[:2], r.window[2:])
                for r in fast]  # fmt: skip
    windows = dict(zip(map(id, fast), read_windows(requests), strict=True))
    out, total = [], 0
    for r in reads:
        v = r.plan.view
        if r.window is None:
            fill = 0 if r.nodata is None else r.nodata
            out.append(np.full((v.height, v.width), fill, dtype=r.info.dtype))
        elif not _fast(r.info, r.plan):
            out.append(gdal_read(r.info, r.band, v, r.plan.resampling, r.plan.reproject,
                                 r.nodata))  # fmt: skip
        else:
            data, nbytes = windows[id(r)]
            total += nbytes
            out.append(warp_window(data, r.window[:2], r.window[2:], r.info, r.plan, r.nodata))
    return out, total


def _fast(info: RasterInfo, plan: ReadPlan) -> bool:
    """Whether the engine reads it (else GDAL's WarpedVRT: a layout the fast path cannot
    decode, or a warp kernel other than nearest, see `ocog_lib.cube.warp`)."""
    return info.fallback is None and plan.reproject == "nearest"


def _layer(chosen: SceneStack, mine: list, expr: Expression) -> np.ndarray:
    """One scene's expression over the view, masked pixels and nodata as NaN."""
    bands, keep = {}, None
    for r, a in mine:
        if r.asset == chosen.mask_asset:
            keep = masks.keep(chosen.mask_kind, a)
        if r.asset in expr.bands:
            bands[r.asset] = scaled(chosen.scenes[r.scene], r.asset, to_float(a, r.nodata))
    if keep is not None:
        for arr in bands.values():
            arr[~keep] = np.nan
    return expr.evaluate(bands)


def scaled(scene: Scene, band: str, values: np.ndarray) -> np.ndarray:
    """`values` (float32, NaN kept) as DN * scale + offset where the scene says so."""
    if band not in scene.scaling:
        return values
    scale, offset = scene.scaling[band]
    values *= np.float32(scale)
    values += np.float32(offset)
    return values


def to_float(values: np.ndarray, nodata: float | None) -> np.ndarray:
    """float32 copy with `nodata` pixels as NaN."""
    out = values.astype(np.float32)
    if nodata is not None and not np.isnan(nodata):
        out[values == nodata] = np.nan
    return out


def _point_values(chosen: SceneStack, expr: Expression, lon: float,
                  lat: float) -> list[tuple[float | None, bool]]:  # fmt: skip
    """(value, inside) per scene; inside is False when the point misses every asset."""
    from rasterio.warp import transform as reproject_points

    picks = []  # (scene index, asset, info, (row, col) or None)
    for i, scene in enumerate(chosen.scenes):
        for asset in _assets(chosen, expr):
            info = raster_info(chosen.uri(scene, asset))
            xs, ys = reproject_points("EPSG:4326", info.crs, [lon], [lat])
            col, row = ~info.geometry.transform * (xs[0], ys[0])
            g = info.geometry
            inside = 0 <= row < g.height and 0 <= col < g.width
            picks.append((i, asset, info, (int(math.floor(row)), int(math.floor(col)))
                          if inside else None))  # fmt: skip
    pixels = _pixels(picks)
    out = []
    for i in range(len(chosen.scenes)):
        mine = [(p, v) for p, v in zip(picks, pixels, strict=True) if p[0] == i]
        out.append(_point_value(chosen, expr, chosen.scenes[i], mine))
    return out


def _pixels(picks: list) -> list[np.ndarray | None]:
    fast = [p for p in picks if p[3] is not None and p[2].fallback is None]
    requests = [WindowRequest(p[2], 0, 1, (p[3][0], p[3][0] + 1), (p[3][1], p[3][1] + 1))
                for p in fast]  # fmt: skip
    got = dict(zip(map(id, fast), (w for w, _ in read_windows(requests)), strict=True))
    out = []
    for p in picks:
        if p[3] is None:
            out.append(None)
        elif id(p) in got:
            out.append(got[id(p)])
        else:
            out.append(_gdal_pixel(p[2], *p[3]))
    return out


def _gdal_pixel(info: RasterInfo, row: int, col: int) -> np.ndarray:
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(info.open_uri) as ds:
        return ds.read(1, window=Window(col, row, 1, 1))


def _point_value(chosen: SceneStack, expr: Expression, scene: Scene,
                 mine: list) -> tuple[float | None, bool]:  # fmt: skip
    if all(v is None for _, v in mine):
        return None, False
    bands, keep = {}, None
    for (_, asset, info, _), v in mine:
        nodata = info.nodata if info.nodata is not None else DN_NODATA
        if asset == chosen.mask_asset:
            keep = np.zeros((1, 1), bool) if v is None else masks.keep(chosen.mask_kind, v)
        if asset in expr.bands:
            bands[asset] = np.full((1, 1), np.nan, np.float32) if v is None else scaled(
                scene, asset, to_float(v, nodata))  # fmt: skip
    if keep is not None:
        for arr in bands.values():
            arr[~keep] = np.nan
    value = float(expr.evaluate(bands)[0, 0])
    return (None if math.isnan(value) else value), True
