"""GDAL warps a source window onto a plan's grid, exactly as its warped VRT would.

The warp is nearest neighbour (rio-tiler's default `reproject_method`): `nearest_index`
runs `rasterio.warp.reproject` (GDAL's warper, the approximate transformer at 0.125 px
like the VRT's) on an index raster the shape of the in-memory window, with its affine
transform, once per geometry; every scene and band on that grid is then a gather. The
warper would split a destination whose source window is mostly outside the raster into
chunks (SRC_FILL_RATIO_HEURISTICS); the VRT never does, and the split moves the
transformer's sample points, so it is turned off. For a band of a multi-band file
(`plan.window` set) the level is warped onto the VRT grid in 512-column strips (the VRT's
block width: the transformer's rows are the same), then GDAL resamples that grid into the
view as GDALRasterBand::IRasterIO does (`resample`, nearest or bilinear).

Other warp kernels go to `gdal_read`: a downsampling kernel's footprint follows the
source window GDAL computes for the whole file, which a window in memory does not
reproduce (a bilinear warp of a window differed by up to 11 DN at a downsampled zoom).

`gdal_read` also serves files the fast path cannot decode (or whose georeferencing it
cannot use): GDAL reads them itself through a WarpedVRT with rio-tiler's parameters.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from affine import Affine

from ocog_lib.cube.errors import UpstreamError
from ocog_lib.cube.plan import ReadPlan, View, vrt_grid
from ocog_lib.cube.sources import RasterInfo
from ocog_lib.errors import InputError

VRT_BLOCK_WIDTH = 512  # a warped VRT's block width


def warp_window(data: np.ndarray, rows: tuple[int, int], cols: tuple[int, int],
                info: RasterInfo, plan: ReadPlan, nodata: float | None) -> np.ndarray:  # fmt: skip
    """The plan's view (height, width) in `data`'s dtype, from the window `data` that
    starts at (`rows[0]`, `cols[0]`) of level `plan.level`; pixels with no source hold
    `nodata` (or 0 when it is None)."""
    src_transform = info.geometry.level_transform(plan.level) * Affine.translation(
        cols[0], rows[0])  # fmt: skip
    if plan.reproject != "nearest":
        raise InputError(f"reproject={plan.reproject}", "the fast path warps with nearest "
                         "only; other kernels are read by `gdal_read`")  # fmt: skip
    g = plan.warp
    index, missing = nearest_index(src_transform, data.shape, info.crs, g.transform, g.width,
                                   g.height, plan.view.crs, plan.window is not None)  # fmt: skip
    grid = data.ravel().take(index)
    if missing is not None:
        grid[missing] = 0 if nodata is None else nodata
    if plan.window is None:
        return grid
    return resample(grid, plan.window, plan.view.height, plan.view.width, plan.resampling,
                    nodata)  # fmt: skip


def nearest_index(src_transform: Affine, shape: tuple[int, int], src_crs: str,
                  dst_transform: Affine, width: int, height: int, dst_crs: str,
                  strips: bool) -> tuple[np.ndarray, np.ndarray | None]:  # fmt: skip
    """For each pixel of the destination grid, the flat index of the source pixel GDAL's
    nearest-neighbour warp copies, and where it copies none (None: nowhere). It depends
    on the geometry only, so every scene and band on the same grid shares one (a stack's
    scenes usually do): one warp of an index raster instead of one per file, and each
    file's warp is a gather."""
    if width * height <= CACHED_INDEX_PIXELS and shape[0] * shape[1] <= CACHED_INDEX_PIXELS:
        return _cached_index(src_transform, shape, src_crs, dst_transform, width, height,
                             dst_crs, strips)  # fmt: skip
    return _index(src_transform, shape, src_crs, dst_transform, width, height, dst_crs, strips)


CACHED_INDEX_PIXELS = 2048 * 2048


def _index(src_transform, shape, src_crs, dst_transform, width, height, dst_crs,
           strips) -> tuple[np.ndarray, np.ndarray | None]:  # fmt: skip
    source = np.arange(shape[0] * shape[1], dtype=np.int32).reshape(shape)
    out = np.empty((height, width), dtype=np.int32)
    step = VRT_BLOCK_WIDTH if strips else width
    for x0 in range(0, width, step):
        w = min(step, width - x0)
        out[:, x0 : x0 + w] = _reproject(source, src_transform, src_crs,
                                         dst_transform * Affine.translation(x0, 0), w, height,
                                         dst_crs, "nearest", None, -1)  # fmt: skip
    missing = out < 0
    if missing.any():
        out[missing] = 0
        missing.flags.writeable = False
    else:
        missing = None
    out.flags.writeable = False
    return out, missing


_cached_index = lru_cache(maxsize=256)(_index)


def _reproject(data: np.ndarray, src_transform: Affine, src_crs: str, dst_transform: Affine,
               width: int, height: int, dst_crs: str, resampling: str, nodata,
               fill) -> np.ndarray:  # fmt: skip
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    out = np.zeros((height, width), dtype=data.dtype)
    reproject(data, out, src_transform=src_transform, src_crs=src_crs, src_nodata=nodata,
              dst_transform=dst_transform, dst_crs=dst_crs, dst_nodata=fill,
              resampling=Resampling[resampling], SRC_FILL_RATIO_HEURISTICS="NO")  # fmt: skip
    return out


def resample(grid: np.ndarray, window: tuple[float, float, float, float], height: int,
             width: int, resampling: str, nodata) -> np.ndarray:  # fmt: skip
    """GDAL's RasterIO of a float `window` (col, row, width, height) of `grid` into a
    height x width buffer, `nodata` pixels left out of the kernel."""
    from rasterio.enums import Resampling
    from rasterio.io import MemoryFile
    from rasterio.windows import Window

    gh, gw = grid.shape
    # any transform but the identity: RasterIO ignores it, rasterio warns without one
    transform = Affine(1.0, 0.0, 0.0, 0.0, -1.0, float(gh))
    with MemoryFile() as mem:
        with mem.open(driver="GTiff", width=gw, height=gh, count=1, dtype=grid.dtype,
                      nodata=nodata, transform=transform) as ds:  # fmt: skip
            ds.write(grid, 1)
        with mem.open() as ds:
            return ds.read(1, window=Window(*window), out_shape=(height, width),
                           resampling=Resampling[resampling])  # fmt: skip


def gdal_read(info: RasterInfo, band: int, view: View, resampling: str, reproject: str,
              nodata: float | None) -> np.ndarray:  # fmt: skip
    """rio-tiler's read of `view` (a WarpedVRT over the file, then a buffer read), for
    files the fast path cannot decode and warp kernels other than nearest. GDAL reads
    the bytes itself here: they are not counted."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    from ocog_lib.secrets import redact_exception, uri_secrets

    t, vw, vh = vrt_grid(info.geometry, view)
    try:
        with rasterio.open(info.open_uri) as src, WarpedVRT(
            src, crs=view.crs, transform=t, width=vw, height=vh, nodata=nodata,
            src_nodata=nodata, resampling=Resampling[reproject], dtype=src.dtypes[0],
        ) as vrt:  # fmt: skip
            return vrt.read(band, out_shape=(view.height, view.width),
                            resampling=Resampling[resampling])  # fmt: skip
    except (rasterio.errors.RasterioError, OSError) as exc:
        cause = redact_exception(exc, uri_secrets(info.open_uri))
    raise UpstreamError(info.uri, f"GDAL cannot read it ({cause})")
