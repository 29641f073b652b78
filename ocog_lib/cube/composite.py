"""A period's composite: the reduced cube over a box, written once as a float32 COG.

The one product of the cube that is stored (a dashboard's layer, a backfilled archive):
the pixels are `reads.read_bbox`'s on the composite's grid, bit for bit, and `write_cog` is
also the writer of the tile server's `/export`. The box (lon/lat by default, or any CRS) is
taken to the stack's CRS; at the native resolution it is grown outward onto the source
pixel grid, so nearest reads whole source pixels. The COG
(GDAL's COG driver: DEFLATE, float predictor, NaN nodata, overviews down to about 64 px,
nearest so they hold only computed values) is written to a temporary name beside the
final one and renamed: the final name never holds a half-written file.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ocog_lib.atomic import atomic_path
from ocog_lib.cube.expression import Expression
from ocog_lib.cube.reads import CubeArray, read_bbox
from ocog_lib.cube.render import check_colormap, preview_png
from ocog_lib.cube.sources import raster_info
from ocog_lib.cube.stack import DateLike, SceneStack
from ocog_lib.errors import InputError

BLOCK = 256  # COG block size, px
SMALLEST_OVERVIEW = 64  # px, the shorter edge of the coarsest overview
WGS84 = "EPSG:4326"


@dataclass(frozen=True)
class CompositeSpec:
    """What to compute: a period, band math and a reducer over a box (None: the stack's
    whole extent) at `resolution` (stack CRS units per pixel; None: native)."""

    expression: str
    reducer: str = "median"
    start: DateLike = None
    end: DateLike = None
    p: float | None = None  # reducer=percentile only
    bbox: tuple[float, float, float, float] | None = None  # left, bottom, right, top
    bbox_crs: str = WGS84
    resolution: float | None = None
    max_cloud: float | None = None
    resampling: str = "nearest"
    colormap: str = "viridis"  # the preview's
    rescale: tuple[float, float] | None = None  # the preview's stretch; None: 2..98 %
    preview_edge: int = 256  # px, the preview's longest edge at most


@dataclass(frozen=True)
class Composite:
    path: Path  # the COG, renamed into place
    scenes: tuple[str, ...]  # the selected scenes that intersect the box, oldest first
    shape: tuple[int, int]  # (height, width)
    bytes: int  # the COG's size on disk
    valid_fraction: float  # pixels with a value (not NaN)
    compute_ms: float  # read + reduce
    write_ms: float
    bbox: tuple[float, float, float, float]  # the grid's bounds in `crs`
    crs: str  # the stack's
    resolution: float
    preview_png: bytes  # RGBA PNG, nodata transparent
    stretch: tuple[float, float]  # the preview's value range (low, high colour)


def write_cog(path: str | Path, cube: CubeArray) -> Path:
    """float32 COG of the cube at `path`, atomically (module docstring); the path."""
    import rasterio

    h, w = cube.data.shape
    levels, edge = 0, min(h, w)
    while edge // 2 >= SMALLEST_OVERVIEW:
        levels, edge = levels + 1, edge // 2
    overviews = {"OVERVIEWS": "AUTO", "OVERVIEW_COUNT": str(levels),
                 "OVERVIEW_RESAMPLING": "NEAREST"} if levels else {"OVERVIEWS": "NONE"}
    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", driver="COG", width=w, height=h, count=1,
                           dtype="float32", crs=cube.crs, transform=cube.transform,
                           nodata=float("nan"), COMPRESS="DEFLATE", PREDICTOR="3",
                           BLOCKSIZE=str(BLOCK), **overviews) as out:  # fmt: skip
            out.write(cube.data.astype("float32", copy=False), 1)
    return Path(path)


def write_composite(stack: SceneStack, spec: CompositeSpec, path: str | Path) -> Composite:
    """Read the period's reduced cube over the box, write its COG at `path`, preview it."""
    check_colormap(spec.colormap, spec.rescale)
    bbox, crs, resolution = composite_grid(stack, spec)
    t0 = time.perf_counter()
    cube = read_bbox(stack, bbox, crs=crs, resolution=resolution, expression=spec.expression,
                     reducer=spec.reducer, p=spec.p, resampling=spec.resampling,
                     start=spec.start, end=spec.end, max_cloud=spec.max_cloud)  # fmt: skip
    t1 = time.perf_counter()
    final = write_cog(path, cube)
    t2 = time.perf_counter()
    png, stretch = preview_png(cube.data, colormap=spec.colormap, rescale=spec.rescale,
                               max_edge=spec.preview_edge)  # fmt: skip
    h, w = cube.data.shape
    t = cube.transform
    bounds = (t.c, t.f + t.e * h, t.c + t.a * w, t.f)
    return Composite(final, cube.scenes, (h, w), final.stat().st_size,
                     float(np.isfinite(cube.data).mean()), (t1 - t0) * 1e3, (t2 - t1) * 1e3,
                     bounds, cube.crs, resolution, png, stretch)  # fmt: skip


def composite_grid(stack: SceneStack, spec: CompositeSpec
                   ) -> tuple[tuple[float, float, float, float], str, float]:  # fmt: skip
    """(bbox in the stack's CRS, that CRS, resolution): the box given, else every scene's
    extent; native resolution (the first scene's first band the expression reads) unless
    one is given."""
    from rasterio.crs import CRS

    bands = Expression.parse(spec.expression, stack.bands, stack.aliases).bands
    band = bands[0] if bands else stack.bands[0]
    first = raster_info(stack.uri(stack.scenes[0], band))
    crs = CRS.from_user_input(first.crs).to_string()
    native = abs(first.geometry.transform.a)
    if spec.resolution is not None and not (
        isinstance(spec.resolution, int | float) and math.isfinite(spec.resolution)
        and spec.resolution > 0
    ):  # fmt: skip
        raise InputError(f"resolution={spec.resolution!r}", "must be a number > 0")
    if spec.bbox is None:
        bbox = _extent(stack, band, crs)
    else:
        bbox = to_crs(spec.bbox, spec.bbox_crs, crs)
    if spec.resolution is None:
        return _snap(bbox, first.geometry.transform), crs, native
    return bbox, crs, float(spec.resolution)


def _extent(stack: SceneStack, band: str, crs: str) -> tuple[float, float, float, float]:
    """The union of every scene's bounds (of `band`) in `crs`."""
    from rasterio.warp import transform_bounds

    boxes = []
    for scene in stack.scenes:
        info = raster_info(stack.uri(scene, band))
        g, t = info.geometry, info.geometry.transform
        box = (t.c, t.f + t.e * g.height, t.c + t.a * g.width, t.f)
        if info.crs != crs:
            box = transform_bounds(info.crs, crs, *box, densify_pts=21)
        boxes.append(box)
    return (min(b[0] for b in boxes), min(b[1] for b in boxes),
            max(b[2] for b in boxes), max(b[3] for b in boxes))  # fmt: skip


def _snap(bbox, transform) -> tuple[float, float, float, float]:
    """The box grown outward to whole pixels of the source grid (north-up)."""
    xres, yres = abs(transform.a), abs(transform.e)
    x0, y0 = transform.c, transform.f
    left = x0 + math.floor((bbox[0] - x0) / xres + 1e-9) * xres
    right = x0 + math.ceil((bbox[2] - x0) / xres - 1e-9) * xres
    top = y0 - math.floor((y0 - bbox[3]) / yres + 1e-9) * yres
    bottom = y0 - math.ceil((y0 - bbox[1]) / yres - 1e-9) * yres
    return left, bottom, right, top


def to_crs(bbox, src: str, dst: str) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) from `src` to `dst`: four finite numbers, lon/lat in range."""
    from rasterio.crs import CRS
    from rasterio.errors import CRSError
    from rasterio.warp import transform_bounds

    values = tuple(bbox)
    if len(values) != 4 or not all(isinstance(v, int | float) and math.isfinite(v)
                                   for v in values):  # fmt: skip
        raise InputError(f"bbox={values}", "need four finite numbers left, bottom, right, top")
    left, bottom, right, top = (float(v) for v in values)
    if not (left < right and bottom < top):
        raise InputError(f"bbox={values}", "need left < right and bottom < top")
    try:
        source = CRS.from_user_input(src)
    except (CRSError, TypeError, ValueError):
        raise InputError(f"bbox_crs={src}", "not a CRS rasterio knows (e.g. EPSG:4326)") from None
    if source.is_geographic and not (-180 <= left and right <= 180
                                     and -90 <= bottom and top <= 90):  # fmt: skip
        raise InputError(f"bbox={values}", "longitudes must be in -180..180 and latitudes "
                         "in -90..90")  # fmt: skip
    out = transform_bounds(source, dst, left, bottom, right, top, densify_pts=21)
    if not all(map(math.isfinite, out)):
        raise InputError(f"bbox={values}", f"has no finite extent in {dst}")
    return tuple(float(v) for v in out)
