"""Fetch and decode the tiles a batch needs, once, on a thread pool.

`TileFetcher` turns tile keys into decoded tiles: it skips what the cache holds or
what another batch is already decoding, merges adjacent byte ranges of one file into
one read, and decodes on threads (imagecodecs and pread release the GIL).
`FallbackReader` serves layouts the fast path cannot decode (striped TIFF, JPEG,
WEBP, ...) through GDAL with one handle per thread, opened in the reading process.
"""

from __future__ import annotations

import mmap
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ocog_lib.errors import InputError, UnsupportedLayout
from ocog_lib.storage import ByteRange, ByteSource, LocalFile, merge_ranges, open_source
from ocog_lib.stream.cache import TileCache
from ocog_lib.stream.decode import decode_tile, has_delta
from ocog_lib.tiff_index import TiffIndex, parse_tiff

# a tile key: (file id, band plane, tile row, tile col)
TileKey = tuple[int, int, int, int]


@dataclass
class RasterSource:
    """One raster: its parsed header (None when only GDAL can read it) and byte source."""

    uri: str
    index: TiffIndex | None
    source: ByteSource | None
    height: int
    width: int
    bands: int
    dtype: np.dtype
    tile_height: int
    tile_width: int
    fallback_reason: str | None = None
    gdal_uri: str | None = None  # what GDAL opens (may carry a SAS token: never shown)

    @property
    def fast(self) -> bool:
        return self.index is not None

    @property
    def tile_bytes(self) -> int:
        """Decoded bytes of one full tile, all bands."""
        return self.tile_height * self.tile_width * self.bands * self.dtype.itemsize

    def window_tiles(self, row: int, col: int, patch: int) -> list[tuple[int, int, int, int]]:
        """(ty, tx, tile top, tile left) of every tile a patch x patch window touches."""
        th, tw = self.tile_height, self.tile_width
        return [
            (ty, tx, ty * th, tx * tw)
            for ty in range(row // th, (row + patch - 1) // th + 1)
            for tx in range(col // tw, (col + patch - 1) // tw + 1)
        ]

    @property
    def remote(self) -> bool:
        return self.source is not None and not isinstance(self.source, LocalFile)

    @property
    def direct(self) -> bool:
        """Uncompressed local file: patches are copied straight out of the page cache."""
        return (
            self.index is not None
            and self.index.compression == 1
            and isinstance(self.source, LocalFile)
        )


def open_raster(uri: str) -> RasterSource:
    """Parse a raster's header once (in the parent); fall back to GDAL where needed.

    `RasterSource.uri` is the redacted form (safe in messages); GDAL gets the raw one.
    """
    from ocog_lib.remote.secrets import redact_uri

    problem: str | None = None
    shown = redact_uri(str(uri))
    try:
        src = open_source(uri)
        idx = parse_tiff(src)
        problem = idx.fast_path_problem
        if problem is None:
            return RasterSource(
                uri=shown,
                index=idx,
                source=src,
                height=idx.height,
                width=idx.width,
                bands=idx.bands,
                dtype=idx.dtype.newbyteorder("="),
                tile_height=idx.tile_height,
                tile_width=idx.tile_width,
            )
    except UnsupportedLayout as exc:
        problem = exc.cause
    # GDAL fallback: header facts from rasterio, no handle kept open across a fork
    import rasterio

    try:
        with rasterio.open(str(uri)) as ds:
            bh, bw = ds.block_shapes[0]
            return RasterSource(
                uri=shown,
                gdal_uri=str(uri),
                index=None,
                source=None,
                height=ds.height,
                width=ds.width,
                bands=ds.count,
                dtype=np.dtype(ds.dtypes[0]),
                tile_height=bh,
                tile_width=bw,
                fallback_reason=problem,
            )
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(shown, f"GDAL cannot read it either ({redact_uri(str(exc))})") from exc


class TileFetcher:
    """Decoded tiles by key, through a bounded cache and a decode thread pool."""

    def __init__(
        self,
        rasters: list[RasterSource],
        cache: TileCache,
        threads: int,
        max_gap: int = 0,
        io_threads: int = 0,
        band_first: bool = True,
    ):
        self.rasters = rasters
        # band_first: tiles are transposed once (they serve several patches); otherwise
        # they stay in the stored layout, predictor 2 still applied: each window undoes it
        # over its own rows only (`decode.undo_delta`)
        self.band_first = band_first
        self.cache = cache
        self.max_gap = max_gap
        self.pool = ThreadPoolExecutor(
            max_workers=max(1, threads), thread_name_prefix="ocog-decode"
        )
        # remote sources: requests in flight at once, apart from the decode threads
        self.io_pool = (
            ThreadPoolExecutor(max_workers=io_threads, thread_name_prefix="ocog-io")
            if io_threads > 0
            else None
        )
        self.bytes_read = 0
        self.tiles_decoded = 0
        self._count_lock = threading.Lock()

    def close(self) -> None:
        if self.io_pool is not None:
            self.io_pool.shutdown(wait=True, cancel_futures=True)
        self.pool.shutdown(wait=True, cancel_futures=True)

    def request(
        self, keys: list[TileKey], position: int | None = None
    ) -> tuple[dict[TileKey, np.ndarray | Future], int]:
        """Start whatever decoding `keys` need; returns key -> tile or future, and #fresh.

        `position`: the batch's place in the cache's plan (see TileCache.set_plan)."""
        found: dict[TileKey, np.ndarray | Future] = {}
        fresh_total = 0
        local: list[tuple[RasterSource, list, Future]] = []  # decoded in a few pool tasks
        todo = list(keys)
        while todo:
            missing: list[TileKey] = []
            for k in todo:
                hit = self.cache.lookup(k, position)
                if hit is None:
                    missing.append(k)
                else:
                    found[k] = hit
            todo = []  # keys another thread claimed between lookup and claim: look again
            for fid in sorted({k[0] for k in missing}):
                fkeys = [k for k in missing if k[0] == fid]
                raster = self.rasters[fid]
                ranges = [ByteRange(*raster.index.tile_entry(0, k[1], k[2], k[3])) for k in fkeys]
                for _, members in merge_ranges(ranges, max_gap=self.max_gap):
                    group = [fkeys[i] for i in members]
                    fut: Future = Future()
                    fresh = set(self.cache.claim(group, fut, position))
                    todo.extend(k for k in group if k not in fresh)
                    if not fresh:
                        continue
                    job = [
                        (k, ranges[i]) for k, i in zip(group, members, strict=True) if k in fresh
                    ]
                    fresh_total += len(job)
                    found.update((k, fut) for k, _ in job)
                    if self.io_pool is None or isinstance(raster.source, LocalFile):
                        local.append((raster, job, fut))
                    else:  # remote: many reads in flight on I/O threads, then decoding
                        self.io_pool.submit(self._fetch_then_queue_decode, raster, job, fut)
        self._submit_local(local)
        return found, fresh_total

    def _submit_local(self, jobs: list[tuple[RasterSource, list, Future]]) -> None:
        """Local jobs go to the pool in a few runs (two per decode thread), not one task per
        tile: a task costs a queue hand-off and a thread wake-up, which on fast codecs
        (ZSTD-1, a mask tile) came to a tenth of the decode time itself."""
        if not jobs:
            return
        runs = min(len(jobs), 2 * self.pool._max_workers)
        per = -(-len(jobs) // runs)
        for i in range(0, len(jobs), per):
            self.pool.submit(self._fetch_and_decode_run, jobs[i : i + per])

    def _fetch_and_decode_run(self, jobs: list[tuple[RasterSource, list, Future]]) -> None:
        for raster, job, fut in jobs:
            self._fetch_and_decode(raster, job, fut)

    def _fetch(self, raster: RasterSource, job: list) -> tuple[memoryview, int]:
        lo = min(r.offset for _, r in job)
        hi = max(r.end for _, r in job)
        blob = memoryview(raster.source.read(lo, hi - lo)) if hi > lo else memoryview(b"")
        with self._count_lock:
            self.bytes_read += hi - lo
        return blob, lo

    def _fetch_and_decode(self, raster: RasterSource, job: list, fut: Future) -> None:
        try:
            blob, lo = self._fetch(raster, job)
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits
            self._fail(raster, job, fut, exc)
            return
        self._decode(raster, job, blob, lo, fut)

    def _fetch_then_queue_decode(self, raster: RasterSource, job: list, fut: Future) -> None:
        try:
            blob, lo = self._fetch(raster, job)
        except BaseException as exc:  # noqa: BLE001
            self._fail(raster, job, fut, exc)
            return
        self.pool.submit(self._decode, raster, job, blob, lo, fut)

    def _decode(
        self, raster: RasterSource, job: list, blob: memoryview, lo: int, fut: Future
    ) -> None:
        try:
            out = {}
            for k, r in job:
                tile = decode_tile(
                    raster.index,
                    blob[r.offset - lo : r.end - lo],
                    band_first=self.band_first,
                    undo_predictor=self.band_first,
                )
                self.cache.put(k, tile)
                out[k] = tile
            with self._count_lock:
                self.tiles_decoded += len(job)
            fut.set_result(out)
        except BaseException as exc:  # noqa: BLE001
            self._fail(raster, job, fut, exc)

    def _fail(self, raster: RasterSource, job: list, fut: Future, exc: BaseException) -> None:
        self.cache.forget_pending([k for k, _ in job])
        if isinstance(exc, InputError):
            fut.set_exception(exc)
        else:
            fut.set_exception(InputError(raster.uri, f"tile read/decode failed ({exc})"))

    def delta_pending(self, raster: RasterSource) -> bool:
        """Whether this raster's tiles come out of the cache still under predictor 2."""
        return not self.band_first and raster.index is not None and has_delta(raster.index)

    @staticmethod
    def resolve(key: TileKey, item: np.ndarray | Future) -> np.ndarray:
        """The decoded tile, waiting for its decode job if it is still running."""
        if isinstance(item, Future):
            return item.result()[key]
        return item


class DirectReader:
    """Uncompressed tiles as views of a per-process memory map of the file.

    No decode and no tile cache: the kernel's page cache already holds the bytes, and
    the one copy a patch needs (into the batch, band-first) reads only the window's rows.
    Mapped pages count toward this process's memory, so once `budget` bytes have been
    touched the mappings are dropped (MADV_DONTNEED; the page cache keeps the data):
    the loader holds no more than the cache budget every loader gets.
    """

    def __init__(self, rasters: list[RasterSource], budget: int = 128 << 20):
        self.rasters = rasters
        self.budget = budget
        self._touched = 0
        self._maps: dict[int, np.ndarray] = {}
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def _map(self, fid: int) -> np.ndarray:
        m = self._maps.get(fid)
        if m is None:
            with self._lock:
                m = self._maps.get(fid)
                if m is None:
                    m = self._maps[fid] = np.memmap(self.rasters[fid].uri, mode="r")
        return m

    def tile(self, fid: int, plane: int, ty: int, tx: int, rows: int) -> np.ndarray | None:
        """(th, tw, samples) view of one stored tile (None when sparse); `rows` of it will
        be read, which is what counts toward the budget."""
        r = self.rasters[fid]
        idx = r.index
        off, n = idx.tile_entry(0, plane, ty, tx)
        if n == 0:
            return None
        spp = idx.bands if idx.planar == 1 else 1
        need = idx.tile_height * idx.tile_width * spp * idx.dtype.itemsize
        if n < need:
            raise InputError(r.uri, f"uncompressed tile ({ty},{tx}) holds {n} bytes, needs {need}")
        self._touched += need // idx.tile_height * rows
        if self._touched > self.budget:
            self._release()
        raw = self._map(fid)[off : off + need]
        return raw.view(idx.dtype).reshape(idx.tile_height, idx.tile_width, spp)

    def _release(self) -> None:
        with self._lock:
            self._touched = 0
            for m in self._maps.values():
                m._mmap.madvise(mmap.MADV_DONTNEED)

    def close(self) -> None:
        self._maps.clear()


class FallbackReader:
    """GDAL windowed reads for layouts the fast path can't decode; one handle per thread."""

    def __init__(self, rasters: list[RasterSource]):
        self.rasters = rasters
        self._local = threading.local()

    def read(self, fid: int, row: int, col: int, size: int, bands: list[int]) -> np.ndarray:
        import rasterio
        from rasterio.windows import Window

        handles = getattr(self._local, "handles", None)
        if handles is None or getattr(self._local, "pid", None) != os.getpid():
            handles = self._local.handles = {}
            self._local.pid = os.getpid()
        ds = handles.get(fid)
        if ds is None:
            r = self.rasters[fid]
            ds = handles[fid] = rasterio.open(r.gdal_uri or r.uri)
        return ds.read([b + 1 for b in bands], window=Window(col, row, size, size))
