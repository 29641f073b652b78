"""Which source level a view reads and onto which grid it is warped: GDAL's choices, mirrored.

rio-tiler reads a tile through a GDAL warped VRT whose grid is the tile's bounds at the
dataset's own resolution reprojected (`vrt_grid`, rio-tiler's `get_vrt_transform`), then
asks it for a tile-sized buffer. What GDAL 3.10 does with that request decides every pixel,
so `plan_read` repeats it:

- Overview: the VRT has one implicit overview per source overview, of size
  int(vrt size / (source width / overview width) + 0.5); GDAL takes the most reduced one
  whose factor is below the request's factor times 1.2 (nearest) or 1.01 (other
  resamplings): the coarsest overview still (about) as fine as the tile.
- Whole-file reads (a single-band file; every band of a file): the VRT warps the chosen
  level straight onto the buffer, its geotransform rescaled to the buffer size
  (VRTWarpedDataset::IRasterIO). The buffer's resampling plays no part: rio-tiler's
  `resampling_method` only moves the overview threshold; the warp's own kernel is
  `reproject` (rio-tiler's `reproject_method`, nearest by default).
- One band of a multi-band file: GDAL warps the level onto the VRT (overview) grid in
  512 x 128 blocks, then resamples that grid into the buffer (GDALRasterBand::IRasterIO):
  `window` says which part of the warped grid, in its pixels, fills the buffer.

The source level's transform is the full-resolution one scaled by the size ratio, as
GDAL's overview transformer does (GDALCreateSimilarTransformer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from affine import Affine

from ocog_lib.errors import InputError

RESAMPLINGS = ("nearest", "bilinear")
_THRESHOLD = {"nearest": 1.2}  # GDAL's oversampling threshold by resampling; else 1.0 + 1e-2
_RADIUS = {"nearest": 1, "bilinear": 1}  # warp kernel radius (px), for the source margin


@dataclass(frozen=True)
class Grid:
    transform: Affine
    width: int
    height: int


@dataclass(frozen=True)
class Geometry:
    """What planning needs of a raster: full-resolution grid, CRS and overview sizes."""

    width: int
    height: int
    transform: Affine
    crs: str  # any string rasterio's CRS.from_user_input takes (e.g. "EPSG:32618")
    overviews: tuple[tuple[int, int], ...]  # (width, height) of each overview, file order

    def level_size(self, level: int) -> tuple[int, int]:
        return (self.width, self.height) if level == 0 else self.overviews[level - 1]

    def level_transform(self, level: int) -> Affine:
        w, h = self.level_size(level)
        return self.transform * Affine.scale(self.width / w, self.height / h)


@dataclass(frozen=True)
class View:
    """An output grid: bounds in `crs`, `width` x `height` pixels."""

    bounds: tuple[float, float, float, float]  # left, bottom, right, top
    crs: str
    width: int
    height: int

    @property
    def grid(self) -> Grid:
        from rasterio.transform import from_bounds

        return Grid(from_bounds(*self.bounds, self.width, self.height), self.width, self.height)


@dataclass(frozen=True)
class ReadPlan:
    level: int  # 0 full resolution, k the k-th overview
    warp: Grid  # the grid (in the view's CRS) the level is warped onto
    window: tuple[float, float, float, float] | None  # (col, row, width, height) of `warp`
    # resampled into the view; None: `warp` is the view's grid itself
    view: View
    resampling: str  # the buffer's (rio-tiler's resampling_method)
    reproject: str  # the warp's (rio-tiler's reproject_method)


def check_resampling(name: str, value: str) -> str:
    if value not in RESAMPLINGS:
        raise InputError(f"{name}={value}", f"one of {', '.join(RESAMPLINGS)}")
    return value


@lru_cache(maxsize=4096)
def plan_read(geom: Geometry, view: View, *, resampling: str = "nearest",
              reproject: str = "nearest", whole: bool = True) -> ReadPlan:  # fmt: skip
    """How GDAL's warped VRT serves `view` from `geom` (module docstring); `whole`: the read
    takes every band of the file (a single-band file always)."""
    w, h = view.width, view.height
    t, vw, vh = vrt_grid(geom, view)
    level, ow, oh = 0, vw, vh
    if w < vw or h < vh:
        level, ow, oh = best_overview(geom, vw, vh, w, h, resampling)
    base = t if level == 0 else t * Affine.scale(vw / ow, vh / oh)
    if whole:
        warp = Grid(base, w, h) if (ow, oh) == (w, h) else Grid(
            base * Affine.scale(ow / w, oh / h), w, h)  # fmt: skip
        return ReadPlan(level, warp, None, view, resampling, reproject)
    window = None
    if level:  # GDAL scales the request's window to the overview: size / (size / ow)
        window = (0.0, 0.0, _snap(vw / (vw / ow)), _snap(vh / (vh / oh)))
    elif (vw, vh) != (w, h):
        window = (0.0, 0.0, float(vw), float(vh))
    return ReadPlan(level, Grid(base, ow, oh), window, view, resampling, reproject)


def _snap(size: float) -> float:
    """A window size within 1e-9 of a whole pixel count, as that count: rasterio truncates
    a window's size to int where GDAL rounds it (394.99999999999994 must stay 395)."""
    return float(round(size)) if abs(size - round(size)) < 1e-9 else size


def vrt_grid(geom: Geometry, view: View) -> tuple[Affine, int, int]:
    """rio-tiler's `get_vrt_transform` for a view in another CRS: the view's bounds at the
    dataset's reprojected resolution, or at the view's when that is finer."""
    native = _default_transform(geom.crs, view.crs, geom.width, geom.height, geom.transform)
    left, bottom, right, top = view.bounds
    out = view.grid.transform
    wres = out.a if abs(native.a) > abs(out.a) else native.a
    hres = out.e if abs(native.e) > abs(out.e) else native.e
    vw = max(1, round((right - left) / wres))
    vh = max(1, round((bottom - top) / hres))
    from rasterio.transform import from_bounds

    return from_bounds(left, bottom, right, top, vw, vh), vw, vh


@lru_cache(maxsize=4096)
def _default_transform(src_crs: str, dst_crs: str, width: int, height: int,
                       transform: Affine) -> Affine:  # fmt: skip
    from rasterio.transform import array_bounds
    from rasterio.warp import calculate_default_transform

    bounds = array_bounds(height, width, transform)  # west, south, east, north
    dst, _, _ = calculate_default_transform(src_crs, dst_crs, width, height, *bounds)
    return dst


def best_overview(geom: Geometry, vw: int, vh: int, w: int, h: int,
                  resampling: str) -> tuple[int, int, int]:  # fmt: skip
    """(level, width, height) of the VRT overview GDAL reads for a w x h buffer of the
    vw x vh VRT (VRTWarpedRasterBand::GetBestOverviewLevel); (0, vw, vh) when none."""
    desired = vw / w if (vw / w < vh / h or h == 1) else vh / h
    threshold = _THRESHOLD.get(resampling, 1.0 + 1e-2)
    best, best_factor, size = 0, 0.0, (vw, vh)
    for i, (ow, _) in enumerate(geom.overviews):
        ratio = geom.width / ow
        nx, ny = int(vw / ratio + 0.5), int(vh / ratio + 0.5)
        if nx < 1 or ny < 1:
            break
        factor = min(vw / nx, vh / ny)
        if factor >= desired * threshold or factor <= best_factor:
            continue
        best, best_factor, size = i + 1, factor, (nx, ny)
    return best, size[0], size[1]


@lru_cache(maxsize=4096)
def source_window(plan: ReadPlan, geom: Geometry) -> tuple[int, int, int, int] | None:
    """(row0, row1, col0, col1) of the plan's level that its warp reads, with a margin for
    the kernel; None when the view misses the raster."""
    import numpy as np
    from rasterio.warp import transform as reproject_points

    g, n = plan.warp, 9
    edge = np.linspace(0.0, 1.0, n)
    u = np.concatenate([edge, edge, np.zeros(n), np.ones(n), [0.5]]) * g.width
    v = np.concatenate([np.zeros(n), np.ones(n), edge, edge, [0.5]]) * g.height
    xs, ys = g.transform * (u, v)
    sx, sy = reproject_points(plan.view.crs, geom.crs, list(xs), list(ys))
    cols, rows = ~geom.level_transform(plan.level) * (np.asarray(sx), np.asarray(sy))
    ok = np.isfinite(cols) & np.isfinite(rows)
    lw, lh = geom.level_size(plan.level)
    if not ok.any():
        return 0, lh, 0, lw
    c0, c1, r0, r1 = cols[ok].min(), cols[ok].max(), rows[ok].min(), rows[ok].max()
    scale = max((c1 - c0) / g.width, (r1 - r0) / g.height, 1.0)
    margin = math.ceil(_RADIUS.get(plan.reproject, 2) * scale) + 3
    col0, col1 = max(0, math.floor(c0) - margin), min(lw, math.ceil(c1) + margin)
    row0, row1 = max(0, math.floor(r0) - margin), min(lh, math.ceil(r1) + margin)
    if col0 >= col1 or row0 >= row1:
        return None
    return row0, row1, col0, col1
