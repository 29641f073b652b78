"""The cube's rasters: headers parsed once, windows of any level read through the engine.

`raster_info` parses a COG's header with `ocog_lib.stream.rasters.open_raster` (byte
ranges, so local and remote files alike) once per file version. `read_windows` reads
windows of any resolution level: it asks one `TileFetcher` for every tile the windows
touch at once (each tile decoded once, on the decode threads, into the process's one
bounded `TileCache`, shared by every request and thread), then copies them out.

A level is served as a raster of its own: the header with that level as its only one, so
the fetcher's tile keys (file id, band plane, tile row, tile column) stay what they are.
Files the fast path cannot decode, or whose georeferencing is not an EPSG code with a
north-up transform, are marked `fallback`: `warp.gdal_read` then reads them with GDAL's
WarpedVRT, as rio-tiler does.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from affine import Affine

from ocog_lib.cube.errors import UpstreamError
from ocog_lib.cube.plan import Geometry
from ocog_lib.storage import LocalFile
from ocog_lib.stream.cache import TileCache
from ocog_lib.stream.fetch import TileFetcher
from ocog_lib.stream.rasters import RasterSource, open_raster

DEFAULT_CACHE_BYTES = 256 << 20
DECODE_THREADS = 2
# remote files: ranged GETs in flight at once, apart from the decode threads. A tile of a
# 12-date stack needs ~36 reads; on 2 threads they queued 18 RTTs deep (~1 s a cold tile
# at 30 ms, `ocog bench tiles --remote`); the HTTP pool holds 64 per host (RemoteOptions)
IO_THREADS = 64
# tiles of one file less than this apart are fetched in one ranged read: GDAL's COGs put 8
# bytes (size leader, trailer) between tiles, so with no gap every tile was its own
# request, 16 per file for a 1024-px box of 256-px tiles (~30 ms each remotely)
MERGE_GAP = 64 << 10


@dataclass(frozen=True)
class RasterInfo:
    uri: str  # safe to show (a remote URI redacted)
    geometry: Geometry
    bands: int
    dtype: np.dtype
    nodata: float | None
    planar: int  # 1 pixel-interleaved, 2 band-interleaved
    fallback: str | None  # why GDAL reads it instead of the fast path; None: fast
    key: tuple = field(repr=False)  # the file version this describes
    open_uri: str = field(repr=False)  # what opens it (may carry a token)

    @property
    def crs(self) -> str:
        return self.geometry.crs


@dataclass(frozen=True)
class WindowRequest:
    info: RasterInfo
    level: int
    band: int  # 1-based
    rows: tuple[int, int]
    cols: tuple[int, int]


class _Engine:
    """One per process: the tile cache, the fetcher and the parsed headers."""

    def __init__(self, max_bytes: int):
        self.cache = TileCache(max_bytes)
        self.rasters: list[RasterSource] = []  # the fetcher's file ids index this list
        self.fetcher = TileFetcher(self.rasters, self.cache, threads=DECODE_THREADS,
                                   max_gap=MERGE_GAP, io_threads=IO_THREADS)
        self.infos: dict[tuple, tuple[RasterInfo, RasterSource | None]] = {}
        self.fids: dict[tuple, int] = {}
        self.lock = threading.Lock()
        self.pid = os.getpid()

    def info(self, uri: str) -> RasterInfo:
        key = _version(uri)
        with self.lock:
            hit = self.infos.get(key)
        if hit is not None:
            return hit[0]
        raster = open_raster(uri)
        info = _describe(raster, key, uri)
        with self.lock:
            self.infos.setdefault(key, (info, raster if info.fallback is None else None))
            return self.infos[key][0]

    def level_fid(self, info: RasterInfo, level: int) -> tuple[int, RasterSource]:
        """The fetcher's file id for one level of a fast raster (registered on first use)."""
        with self.lock:
            fid = self.fids.get((info.key, level))
            if fid is not None:
                return fid, self.rasters[fid]
            held = self.infos.get(info.key)
        raster = held[1] if held and held[1] is not None else open_raster(info.open_uri)
        level_raster = _level(raster, level)
        with self.lock:
            fid = self.fids.get((info.key, level))
            if fid is None:
                fid = self.fids[(info.key, level)] = len(self.rasters)
                self.rasters.append(level_raster)
            return fid, self.rasters[fid]


_ENGINE: _Engine | None = None
_ENGINE_LOCK = threading.Lock()


def engine(max_bytes: int | None = None) -> _Engine:
    """This process's engine (a fresh one after a fork: threads do not survive it);
    `max_bytes` replaces it with one whose cache holds that many decoded bytes."""
    global _ENGINE
    with _ENGINE_LOCK:
        if max_bytes is not None or _ENGINE is None or _ENGINE.pid != os.getpid():
            _ENGINE = _Engine(DEFAULT_CACHE_BYTES if max_bytes is None else max_bytes)
        return _ENGINE


def cache() -> TileCache:
    """The process's decoded-tile cache (hit rate, bytes held)."""
    return engine().cache


def raster_info(uri: str) -> RasterInfo:
    """A raster's facts, parsed once per file version (a local file rewritten is re-read)."""
    return engine().info(uri)


def raster_infos(uris: list[str]) -> list[RasterInfo]:
    """`raster_info` of each, the remote headers not parsed yet fetched concurrently: a
    stack's 36 files cost one or two round trips instead of one or two each (~2 s at
    30 ms, in sequence)."""
    eng = engine()
    with eng.lock:
        todo = [u for u in dict.fromkeys(uris)
                if "://" in u and not u.startswith("file://") and _version(u) not in eng.infos]
    if len(todo) > 1:
        with ThreadPoolExecutor(min(IO_THREADS, len(todo)), "ocog-header") as pool:
            list(pool.map(eng.info, todo))
    return [eng.info(u) for u in uris]


def _version(uri: str) -> tuple:
    if "://" in uri and not uri.startswith("file://"):
        return (uri,)
    try:
        st = os.stat(uri)
    except OSError:
        return (uri,)  # open_raster says what is wrong with it
    return (uri, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _describe(raster: RasterSource, key: tuple, uri: str) -> RasterInfo:
    """RasterInfo from a parsed header; GDAL's view of it where the fast path cannot go."""
    idx = raster.index
    reason = raster.fallback_reason
    crs = transform = None
    if idx is not None:
        geo = idx.georef
        if len(geo.crs) == 1 and geo.crs[0][0] == "EPSG":
            crs = f"EPSG:{geo.crs[0][1]}"
        t = geo.transform
        if t is not None and t[1] == 0 and t[3] == 0:
            transform = Affine(*t)
        if crs is None or transform is None:
            reason = f"georeferencing {geo.crs_name} / {t} is not an EPSG code, north up"
    if reason is not None:
        gdal_uri = raster.gdal_uri or _gdal_uri(raster, uri)
        geom, bands, dtype, nodata = _gdal_facts(raster.uri, gdal_uri)
        return RasterInfo(raster.uri, geom, bands, dtype, nodata, 1, reason, key, gdal_uri)
    overviews = tuple((lv.width, lv.height) for lv in idx.levels[1:])
    geom = Geometry(idx.width, idx.height, transform, crs, overviews)
    return RasterInfo(raster.uri, geom, idx.bands, raster.dtype, idx.nodata, idx.planar, None,
                      key, uri)  # fmt: skip


def _gdal_uri(raster: RasterSource, uri: str) -> str:
    src = raster.source
    if isinstance(src, LocalFile):
        return src.path
    return getattr(src, "signed_url", uri)


def _gdal_facts(shown: str, gdal_uri: str) -> tuple[Geometry, int, np.dtype, float | None]:
    import rasterio

    from ocog_lib.secrets import redact_exception, uri_secrets

    try:
        with rasterio.open(gdal_uri) as ds:
            overviews = []
            for i in range(len(ds.overviews(1))):
                with rasterio.open(gdal_uri, overview_level=i) as ov:
                    overviews.append((ov.width, ov.height))
            if ds.crs is None:
                raise UpstreamError(shown, "has no CRS: the cube cannot place it")
            geom = Geometry(ds.width, ds.height, ds.transform, ds.crs.to_wkt(), tuple(overviews))
            return geom, ds.count, np.dtype(ds.dtypes[0]), ds.nodata
    except rasterio.errors.RasterioError as exc:
        cause = redact_exception(exc, uri_secrets(gdal_uri))
    raise UpstreamError(shown, f"GDAL cannot read it ({cause})")


def _level(raster: RasterSource, level: int) -> RasterSource:
    """One resolution level of a fast raster as a raster of its own."""
    if level == 0:
        return raster
    lv = raster.index.levels[level]
    idx = dataclasses.replace(raster.index, levels=(lv,))
    return RasterSource(uri=raster.uri, index=idx, source=raster.source, height=lv.height,
                        width=lv.width, bands=raster.bands, dtype=raster.dtype,
                        tile_height=lv.tile_height, tile_width=lv.tile_width)  # fmt: skip


def read_windows(requests: list[WindowRequest]) -> list[tuple[np.ndarray, int]]:
    """Each request's window (its dtype, (rows, cols)) and the stored bytes of the tiles
    it had to wait for (neither decoded in the cache nor shared with an earlier request
    of this call); all tiles are fetched and decoded in one go."""
    eng = engine()
    jobs, keys = [], {}
    for req in requests:
        if req.info.fallback is not None:
            raise UpstreamError(req.info.uri, "not readable by the fast path "
                                f"({req.info.fallback})")  # fmt: skip
        fid, raster = eng.level_fid(req.info, req.level)
        plane = req.band - 1 if raster.index.planar == 2 else 0
        (r0, r1), (c0, c1) = req.rows, req.cols
        tiles = raster.grid.window_tiles(r0, c0, r1 - r0, c1 - c0)
        job = [(fid, plane, ty, tx) for ty, tx in tiles]
        keys.update(dict.fromkeys(job))
        jobs.append((req, raster, job))
    found, _ = eng.fetcher.request(list(keys))
    out, counted = [], set()
    for req, raster, job in jobs:
        window = _assemble(req, raster, job, found)
        fresh = [k for k in job if k not in counted and not isinstance(found[k], np.ndarray)]
        counted.update(fresh)
        nbytes = sum(raster.index.tile_entry(0, k[1], k[2], k[3])[1] for k in fresh)
        out.append((window, nbytes))
    return out


def _assemble(req: WindowRequest, raster: RasterSource, job: list, found: dict) -> np.ndarray:
    (r0, r1), (c0, c1) = req.rows, req.cols
    out = np.empty((r1 - r0, c1 - c0), dtype=raster.dtype)
    channel = 0 if raster.index.planar == 2 else req.band - 1
    th, tw = raster.tile_height, raster.tile_width
    for key in job:
        tile = TileFetcher.resolve(key, found[key])
        top, left = key[2] * th, key[3] * tw
        y0, y1 = max(r0, top), min(r1, top + th)
        x0, x1 = max(c0, left), min(c1, left + tw)
        out[y0 - r0 : y1 - r0, x0 - c0 : x1 - c0] = tile[channel, y0 - top : y1 - top,
                                                         x0 - left : x1 - left]  # fmt: skip
    return out
