"""Fetch and decode the tiles a batch needs, once, on a thread pool.

`TileFetcher` turns tile keys into decoded tiles: it skips what the cache holds or
what another batch is already decoding, merges adjacent byte ranges of one file into
one read, and decodes on threads (imagecodecs and pread release the GIL).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor

import numpy as np

from ocog_lib.cog.decode import decode_tile, has_delta
from ocog_lib.errors import InputError
from ocog_lib.storage import ByteRange, LocalFile, merge_ranges
from ocog_lib.stream.cache import TileCache
from ocog_lib.stream.rasters import RasterSource, TileKey


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
