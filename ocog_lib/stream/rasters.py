"""Fetch and decode the tiles a batch needs, once, on a thread pool.

`TileFetcher` turns tile keys into decoded tiles: it skips what the cache holds or
what another batch is already decoding, merges adjacent byte ranges of one file into
one read, and decodes on threads (imagecodecs and pread release the GIL).
`FallbackReader` serves layouts the fast path cannot decode (striped TIFF, JPEG,
WEBP, ...) through GDAL with one handle per thread, opened in the reading process.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np

from ocog_lib.cog.decode import decode_tile, has_delta
from ocog_lib.cog.grid import TileGrid
from ocog_lib.cog.tiff_index import TiffIndex, parse_tiff
from ocog_lib.errors import InputError, UnsupportedLayout
from ocog_lib.storage import ByteRange, ByteSource, LocalFile, merge_ranges, open_source
from ocog_lib.stream.cache import TileCache

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
    # what GDAL opens: may carry a SAS token, so never shown (not in repr either)
    gdal_uri: str | None = field(default=None, repr=False)

    @property
    def fast(self) -> bool:
        return self.index is not None

    @property
    def tile_bytes(self) -> int:
        """Decoded bytes of one full tile, all bands."""
        return self.tile_height * self.tile_width * self.bands * self.dtype.itemsize

    @property
    def grid(self) -> TileGrid:
        return TileGrid(self.height, self.width, self.tile_height, self.tile_width)

    def window_tiles(self, row: int, col: int, patch: int) -> list[tuple[int, int, int, int]]:
        """(ty, tx, tile top, tile left) of every tile a patch x patch window touches."""
        th, tw = self.tile_height, self.tile_width
        rows, cols = self.grid.tiles_for_window(row, col, patch, patch)
        return [(ty, tx, ty * th, tx * tw) for ty in rows for tx in cols]

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

    `RasterSource.uri` is safe in messages: a remote URI redacted, a local path as given
    (a file name is no secret, and `x?sig=1.tif` is a name, not a query). I/O never goes
    through it: reads use `source`, GDAL gets `gdal_uri` (the raw URI).
    """
    src = open_source(uri)
    local = isinstance(src, LocalFile)
    shown = str(uri) if local else src.uri
    try:
        idx = parse_tiff(src)
        problem = idx.fast_path_problem
    except UnsupportedLayout as exc:
        idx, problem = None, exc.cause
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
    # GDAL fallback: header facts from rasterio, no handle kept open across a fork
    gdal_uri = src.path if local else getattr(src, "signed_url", str(uri))
    try:
        with _gdal_env(gdal_uri), _rasterio().open(gdal_uri) as ds:
            (bh, bw), facts = ds.block_shapes[0], (ds.height, ds.width, ds.count, ds.dtypes[0])
    except _gdal_errors() as exc:
        cause = _gdal_cause(exc, gdal_uri)
    else:
        height, width, bands, dtype = facts
        return RasterSource(
            uri=shown, gdal_uri=gdal_uri, index=None, source=None, height=height,
            width=width, bands=bands, dtype=np.dtype(dtype), tile_height=bh, tile_width=bw,
            fallback_reason=problem,
        )  # fmt: skip
    # raised here, not in the except block: GDAL's errors (the raw URI in them) must not
    # ride along as __context__
    raise InputError(shown, f"GDAL cannot read it either ({cause})")


def _rasterio():
    import rasterio

    return rasterio


def _gdal_errors() -> tuple[type[BaseException], ...]:
    from rasterio._err import CPLE_BaseError
    from rasterio.errors import RasterioError

    return (RasterioError, CPLE_BaseError, OSError)


def _gdal_cause(exc: BaseException, gdal_uri: str) -> str:
    """GDAL's error, its chained causes too, with the URI's secrets masked."""
    from ocog_lib.secrets import redact_exception, uri_secrets

    return redact_exception(exc, uri_secrets(gdal_uri))


def _gdal_env(gdal_uri: str):
    """Remote opens skip GDAL's directory listing (sidecar files): it costs a request
    per open and sends the SAS to a URL no one asked for."""
    if "://" not in gdal_uri and not gdal_uri.startswith("/vsi"):
        return nullcontext()
    return _rasterio().Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR")


class TileFetcher:
    """Decoded tiles by key, through a bounded cache and a decode thread pool.

    Every tile a request claims in the cache ends up decoded or failed, whatever goes
    wrong (a bad header entry, a closed pool, `close()` itself): a batch never waits on a
    tile nobody will decode. A failed tile fails alone: the rest of its merged read lands.
    """

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
        # claimed jobs not yet resolved: what close() fails so no waiter is left behind
        self._open: dict[Future, tuple[RasterSource, list[TileKey]]] = {}

    def close(self) -> None:
        if self.io_pool is not None:
            self.io_pool.shutdown(wait=True, cancel_futures=True)
        self.pool.shutdown(wait=True, cancel_futures=True)
        with self._count_lock:
            left = list(self._open.items())
        for fut, (raster, keys) in left:  # cancelled before they ran
            self._fail(raster, keys, fut, InputError(raster.uri, "stream closed before the read"))

    def request(
        self, keys: list[TileKey], position: int | None = None
    ) -> tuple[dict[TileKey, np.ndarray | Future], int]:
        """Start whatever decoding `keys` need; returns key -> tile or future, and #fresh.

        `position`: the batch's place in the cache's plan (see TileCache.set_plan)."""
        found: dict[TileKey, np.ndarray | Future] = {}
        claimed: list[tuple[RasterSource, list, Future]] = []
        try:
            todo = list(keys)
            while todo:
                todo = self._claim(todo, position, found, claimed)
        except BaseException as exc:  # nothing scheduled yet: release every claim
            for raster, job, fut in claimed:
                self._fail(raster, [k for k, _ in job], fut, exc)
            raise
        self._schedule(claimed)
        return found, sum(len(job) for _, job, _ in claimed)

    def _claim(self, todo: list, position, found: dict, claimed: list) -> list[TileKey]:
        """Look `todo` up, claim what nobody holds; returns keys claimed meanwhile by
        another thread (look again)."""
        missing: list[TileKey] = []
        for k in todo:
            hit = self.cache.lookup(k, position)
            if hit is None:
                missing.append(k)
            else:
                found[k] = hit
        again: list[TileKey] = []
        files = []  # every tile's byte range first: a bad header entry fails before any claim
        for fid in sorted({k[0] for k in missing}):
            fkeys = [k for k in missing if k[0] == fid]
            raster = self.rasters[fid]
            ranges = [ByteRange(*raster.index.tile_entry(0, k[1], k[2], k[3])) for k in fkeys]
            files.append((raster, fkeys, ranges))
        for raster, fkeys, ranges in files:
            for _, members in merge_ranges(ranges, max_gap=self.max_gap):
                group = [fkeys[i] for i in members]
                fut: Future = Future()
                fresh = set(self.cache.claim(group, fut, position))
                again.extend(k for k in group if k not in fresh)
                if not fresh:
                    continue
                job = [(k, ranges[i]) for k, i in zip(group, members, strict=True) if k in fresh]
                with self._count_lock:
                    self._open[fut] = (raster, [k for k, _ in job])
                claimed.append((raster, job, fut))
                found.update((k, fut) for k, _ in job)
        return again

    def _schedule(self, jobs: list[tuple[RasterSource, list, Future]]) -> None:
        """Hand claimed jobs to the pools. Local ones go in a few runs (two per decode
        thread), not one task per tile: a task costs a queue hand-off and a thread wake-up,
        which on fast codecs (ZSTD-1, a mask tile) came to a tenth of the decode time.
        Remote ones get an I/O thread each. A job no pool takes (closed) fails."""
        local, tasks = [], []
        for job in jobs:
            if self.io_pool is None or isinstance(job[0].source, LocalFile):
                local.append(job)
            else:
                tasks.append((self.io_pool, self._fetch_then_queue_decode, [job]))
        if local:
            per = -(-len(local) // min(len(local), 2 * self.pool._max_workers))
            tasks += [
                (self.pool, self._fetch_and_decode_run, local[i : i + per])
                for i in range(0, len(local), per)
            ]
        for n, (pool, fn, run) in enumerate(tasks):
            try:
                pool.submit(fn, run)
            except BaseException as exc:
                for _, _, rest in tasks[n:]:
                    for raster, job, fut in rest:
                        self._fail(raster, [k for k, _ in job], fut, exc)
                raise

    def _fetch_and_decode_run(self, jobs: list[tuple[RasterSource, list, Future]]) -> None:
        for raster, job, fut in jobs:
            try:
                pieces = self._read(raster, job)
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits
                self._fail(raster, [k for k, _ in job], fut, exc)
                continue
            self._decode(raster, pieces, fut)

    def _fetch_then_queue_decode(self, jobs: list[tuple[RasterSource, list, Future]]) -> None:
        for raster, job, fut in jobs:
            try:
                pieces = self._read(raster, job)
                self.pool.submit(self._decode, raster, pieces, fut)
            except BaseException as exc:  # noqa: BLE001
                self._fail(raster, [k for k, _ in job], fut, exc)

    def _fetch(self, raster: RasterSource, job: list) -> tuple[memoryview, int]:
        lo = min(r.offset for _, r in job)
        hi = max(r.end for _, r in job)
        blob = memoryview(raster.source.read(lo, hi - lo)) if hi > lo else memoryview(b"")
        with self._count_lock:
            self.bytes_read += hi - lo
        return blob, lo

    def _read(self, raster: RasterSource, job: list) -> list[tuple[TileKey, object]]:
        """Each tile's bytes, or its error: a merged read that fails is retried tile by
        tile, so only the tiles that cannot be read fail, not their neighbours."""
        try:
            blob, lo = self._fetch(raster, job)
            return [(k, blob[r.offset - lo : r.end - lo]) for k, r in job]
        except Exception as exc:
            if len(job) == 1:
                return [(job[0][0], _tile_error(raster, job[0][0], exc))]
        pieces: list[tuple[TileKey, object]] = []
        for k, r in job:
            try:
                blob, _ = self._fetch(raster, [(k, r)])
                pieces.append((k, blob))
            except Exception as exc:
                pieces.append((k, _tile_error(raster, k, exc)))
        return pieces

    def _decode(self, raster: RasterSource, pieces: list, fut: Future) -> None:
        """Decode each tile on its own: the good ones land in the cache and the result,
        a bad one is its InputError in the result (and may be retried by a later batch)."""
        try:
            out: dict[TileKey, np.ndarray | InputError] = {}
            for k, raw in pieces:
                if not isinstance(raw, InputError):
                    try:
                        tile = decode_tile(
                            raster.index, raw, band_first=self.band_first,
                            undo_predictor=self.band_first,
                        )  # fmt: skip
                    except Exception as exc:
                        raw = _tile_error(raster, k, exc)
                    else:
                        self.cache.put(k, tile)
                        out[k] = tile
                        continue
                self.cache.forget_pending([k], fut)
                out[k] = raw
            with self._count_lock:
                self.tiles_decoded += sum(not isinstance(v, InputError) for v in out.values())
                self._open.pop(fut, None)
            fut.set_result(out)
        except BaseException as exc:  # noqa: BLE001
            self._fail(raster, [k for k, _ in pieces], fut, exc)

    def _fail(self, raster: RasterSource, keys: list, fut: Future, exc: BaseException) -> None:
        self.cache.forget_pending(keys, fut)
        with self._count_lock:
            self._open.pop(fut, None)
        if not isinstance(exc, InputError):
            exc = InputError(raster.uri, f"tile read/decode failed ({_cause(exc)})")
        try:
            fut.set_exception(exc)
        except InvalidStateError:  # already resolved: its waiters have what they need
            pass

    def delta_pending(self, raster: RasterSource) -> bool:
        """Whether this raster's tiles come out of the cache still under predictor 2."""
        return not self.band_first and raster.index is not None and has_delta(raster.index)

    @staticmethod
    def resolve(key: TileKey, item: np.ndarray | Future) -> np.ndarray:
        """The decoded tile, waiting for its decode job if it is still running."""
        if isinstance(item, Future):
            item = item.result()[key]
        if isinstance(item, InputError):  # a fresh one per waiter (threads share the result)
            raise InputError(item.what, item.cause)
        return item


def _tile_error(raster: RasterSource, key: TileKey, exc: BaseException) -> InputError:
    """An unreadable tile, named: file, band plane and tile row/column."""
    _, plane, ty, tx = key
    where = f"tile ({ty}, {tx})" + (f" band {plane}" if plane else "")
    cause = exc.cause if isinstance(exc, InputError) else _cause(exc)
    return InputError(raster.uri, f"{where} cannot be read/decoded ({cause})")


def _cause(exc: BaseException) -> str:
    """An unexpected error as text safe to show (a URI in it is redacted)."""
    from ocog_lib.secrets import redact_uri

    return redact_uri(f"{type(exc).__name__}: {exc}")


class DirectReader:
    """Uncompressed local tiles, read with pread: no decode and no tile cache.

    A patch reads only its rows of each tile it touches (the page cache holds the bytes)
    into this thread's buffer, then copies them into the batch once. pread, not a memory
    map: a mapped file truncated under the run kills the process with SIGBUS; a read of
    it is an error, and every read checks the file is still the one whose header was
    parsed (`LocalFile.read_into`), so a file changed in place never yields garbage.
    """

    def __init__(self, rasters: list[RasterSource]):
        self.rasters = rasters
        self._local = threading.local()

    def _buffer(self, n: int) -> np.ndarray:
        buf = getattr(self._local, "buf", None)
        if buf is None or len(buf) < n:
            buf = self._local.buf = np.empty(max(n, 1 << 20), np.uint8)
        return buf[:n]

    def tile_rows(self, fid: int, plane: int, ty: int, tx: int, rows: slice) -> np.ndarray | None:
        """(len(rows), tw, samples): those rows of one stored tile (None when sparse). The
        array lives in this thread's buffer: copy it out before this thread's next call."""
        r = self.rasters[fid]
        idx = r.index
        off, n = idx.tile_entry(0, plane, ty, tx)
        if n == 0:
            return None
        spp = idx.bands if idx.planar == 1 else 1
        stride = idx.tile_width * spp * idx.dtype.itemsize
        if n < idx.tile_height * stride:
            need = idx.tile_height * stride
            raise InputError(r.uri, f"uncompressed tile ({ty},{tx}) holds {n} bytes, needs {need}")
        buf = self._buffer((rows.stop - rows.start) * stride)
        r.source.read_into(buf, off + rows.start * stride)
        return buf.view(idx.dtype).reshape(-1, idx.tile_width, spp)

    def close(self) -> None:
        self._local = threading.local()


class FallbackReader:
    """GDAL windowed reads for layouts the fast path can't decode; one handle per thread.

    A failed read is an InputError naming the file (so on_error="skip" covers it), its
    cause redacted and no GDAL error chained: those quote the raw URI."""

    def __init__(self, rasters: list[RasterSource]):
        self.rasters = rasters
        self._local = threading.local()

    def _handles(self) -> dict:
        handles = getattr(self._local, "handles", None)
        if handles is None or getattr(self._local, "pid", None) != os.getpid():
            handles = self._local.handles = {}
            self._local.pid = os.getpid()
        return handles

    def read(self, fid: int, row: int, col: int, size: int, bands: list[int]) -> np.ndarray:
        from rasterio.windows import Window

        r = self.rasters[fid]
        uri = r.gdal_uri or r.uri
        handles = self._handles()
        try:
            ds = handles.get(fid)
            if ds is None:
                with _gdal_env(uri):
                    ds = handles[fid] = _rasterio().open(uri)
            return ds.read([b + 1 for b in bands], window=Window(col, row, size, size))
        except _gdal_errors() as exc:
            cause = _gdal_cause(exc, uri)
        bad = handles.pop(fid, None)  # reopened by the next read: GDAL may retry then
        if bad is not None:
            bad.close()
        raise InputError(r.uri, f"GDAL cannot read window {row},{col} ({cause})")
