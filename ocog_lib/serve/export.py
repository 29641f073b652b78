"""`/export`: the reduced cube over a box as one float32 COG, computed, written, streamed.

The box (in `bbox_crs`, lon/lat by default) is taken to the stack's CRS, its grid at
`resolution` (the stack's native by default) is sized by arithmetic alone and refused
(413) when larger than `ServeConfig.max_export_pixels` or the cube's memory bound, before
any pixel is read. The pixels are `ocog_lib.cube.reads.read_bbox`'s, bit for bit; the COG
is `ocog_lib.cube.composite.write_cog`'s (the one writer of the cube's COGs: DEFLATE, float
predictor, NaN nodata, nearest overviews), written to a temporary name and renamed.
The stream opens the file and unlinks it at once: nothing stays on disk, even when the
client goes away mid-download.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ocog_lib.cube.composite import write_cog
from ocog_lib.cube.reads import MAX_CUBE_BYTES, read_bbox
from ocog_lib.cube.sources import raster_info
from ocog_lib.cube.stack import SceneStack
from ocog_lib.serve.errors import ApiError
from ocog_lib.serve.params import TileQuery

CHUNK = 1 << 20  # bytes per streamed chunk


@dataclass(frozen=True)
class ExportBox:
    bbox: tuple[float, float, float, float]  # left, bottom, right, top in `crs`
    crs: str
    resolution: float | None  # units of the stack's CRS per pixel; None: native


@dataclass(frozen=True)
class ExportPlan:
    stack: SceneStack  # the selection
    query: TileQuery
    bbox: tuple[float, float, float, float]  # in the stack's CRS
    crs: str  # the stack's
    resolution: float
    width: int
    height: int


@dataclass(frozen=True)
class ExportFile:
    path: Path  # the COG, renamed into place
    size: int
    scenes: tuple[str, ...]
    compute_ms: float


def parse_bbox(text: str, crs: str, resolution: float | None) -> ExportBox:
    """`minx,miny,maxx,maxy`: four finite numbers with min < max."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise ApiError(f"bbox={text}", "expected four numbers minx,miny,maxx,maxy",
                       status=400, error="bad bbox")  # fmt: skip
    left, bottom, right, top = values
    if not (all(map(math.isfinite, values)) and left < right and bottom < top):
        raise ApiError(f"bbox={text}", "need finite numbers with minx < maxx and miny < maxy",
                       error="bad bbox")  # fmt: skip
    return ExportBox(values, crs, resolution)


def plan_export(chosen: SceneStack, query: TileQuery, box: ExportBox, bands: tuple[str, ...],
                max_pixels: int) -> ExportPlan:  # fmt: skip
    """The output grid in the stack's CRS; refused (413) past `max_pixels` or the cube's
    memory bound. Reads only the first file's header (its CRS and resolution)."""
    info = raster_info(chosen.uri(chosen.scenes[0], bands[0]))
    crs = _crs_name(info.crs)
    bbox = _to_crs(box, crs)
    res = box.resolution if box.resolution is not None else abs(info.geometry.transform.a)
    width = max(1, math.ceil((bbox[2] - bbox[0]) / res - 1e-9))  # as read_bbox's grid
    height = max(1, math.ceil((bbox[3] - bbox[1]) / res - 1e-9))
    shown = f"bbox={','.join(f'{v:g}' for v in box.bbox)}"
    if width * height > max_pixels:
        raise ApiError(shown, f"{width} x {height} px at {res:g} ({crs}) is more than the "
                       f"{max_pixels} px an export may have: a smaller box or a coarser "
                       "resolution", status=413, error="export too large")  # fmt: skip
    cube = len(chosen.scenes) * width * height * 4
    if cube > MAX_CUBE_BYTES:
        raise ApiError(shown, f"{len(chosen.scenes)} scenes x {width} x {height} px is "
                       f"{cube / 2**30:.1f} GiB of float32 to reduce, more than "
                       f"{MAX_CUBE_BYTES / 2**30:g} GiB: fewer dates or a smaller box",
                       status=413, error="export too large")  # fmt: skip
    return ExportPlan(chosen, query, bbox, crs, res, width, height)


def _crs_name(crs: str) -> str:
    from rasterio.crs import CRS

    return CRS.from_user_input(crs).to_string()


def _to_crs(box: ExportBox, crs: str) -> tuple[float, float, float, float]:
    from rasterio.crs import CRS
    from rasterio.errors import CRSError
    from rasterio.warp import transform_bounds

    try:
        src = CRS.from_user_input(box.crs)
    except (CRSError, TypeError, ValueError):
        raise ApiError(f"bbox_crs={box.crs}", "not a CRS rasterio knows (e.g. EPSG:4326)",
                       error="bad bbox_crs") from None  # fmt: skip
    if src.is_geographic and not (-180 <= box.bbox[0] and box.bbox[2] <= 180
                                  and -90 <= box.bbox[1] and box.bbox[3] <= 90):  # fmt: skip
        raise ApiError(f"bbox={box.bbox}", "longitudes must be in -180..180 and latitudes "
                       "in -90..90", error="bad bbox")  # fmt: skip
    try:
        out = transform_bounds(src, crs, *box.bbox, densify_pts=21)
    except Exception as exc:  # noqa: BLE001 - PROJ's failure types vary
        raise ApiError(f"bbox={box.bbox}", f"cannot be taken to {crs} ({exc})",
                       error="bad bbox") from None  # fmt: skip
    if not all(map(math.isfinite, out)):
        raise ApiError(f"bbox={box.bbox}", f"has no finite extent in {crs}", error="bad bbox")
    return tuple(float(v) for v in out)


def write_export(plan: ExportPlan, folder: Path) -> ExportFile:
    """Read the box through the cube and write its COG into `folder` (runs in the pool)."""
    t0 = time.perf_counter()
    q = plan.query
    cube = read_bbox(plan.stack, plan.bbox, crs=plan.crs, resolution=plan.resolution,
                     expression=q.expression, reducer=q.reducer, p=q.p,
                     resampling=q.resampling, start=q.start, end=q.end,
                     max_cloud=q.max_cloud)  # fmt: skip
    path = write_cog(folder / f"export-{uuid.uuid4().hex}.tif", cube)
    return ExportFile(path, path.stat().st_size, cube.scenes, (time.perf_counter() - t0) * 1e3)


def stream_and_remove(path: Path) -> Iterator[bytes]:
    """The file's bytes in chunks; it is unlinked as soon as it is open, so it is gone from
    the folder whatever happens to the response (the open handle keeps the bytes)."""
    handle = path.open("rb")
    os.unlink(path)

    def chunks() -> Iterator[bytes]:
        with handle:
            while block := handle.read(CHUNK):
                yield block

    return chunks()
