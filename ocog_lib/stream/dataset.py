"""The streaming engine: COG windows to ready batch tensors.

`CogStream` parses every header once in the parent, reads the windows it is given (or
draws them with the configured sampler: samplers are apart from the dataset, as in
torchgeo), and delivers whole batches:
`{"image": (B, C, H, W), "mask": (B, H, W), "window": (B, 3)}`.
Each batch is assembled straight into one preallocated tensor (pinned when CUDA is
present) from decoded tiles, so there is no per-sample tensor and no collate copy.

Where the work runs:
- `workers=0`: in this process. Decoding runs on `threads` threads and `prefetch`
  batches are assembled ahead on their own threads; nothing crosses a process.
- `workers=N`: N DataLoader processes, each running the same threaded engine over its
  share of the batches (whole tile-visit groups, so tile reuse stays inside a worker).
  Only parsed headers cross the process boundary; every file is opened in the worker.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from traceback import format_exception

import numpy as np
import torch

from ocog_lib.cog.decode import undo_delta
from ocog_lib.cog.grid import TileGrid
from ocog_lib.cog.header_index import HeaderIndex
from ocog_lib.cog.tiff_index import Georef, read_georef
from ocog_lib.errors import InputError, OcogError
from ocog_lib.secrets import redact_uri
from ocog_lib.storage import open_source
from ocog_lib.stream.buffers import BatchBuffers
from ocog_lib.stream.cache import TileCache
from ocog_lib.stream.config import StreamConfig
from ocog_lib.stream.fetch import TileFetcher
from ocog_lib.stream.normalize import Normalization
from ocog_lib.stream.rasters import (
    DirectReader,
    FallbackReader,
    IndexStats,
    RasterSource,
    open_rasters,
)
from ocog_lib.stream.samplers import batch_mix
from ocog_lib.stream.windows import (
    Batches,
    EpochWindows,
    GivenWindows,
    WindowSource,
    WorkerShare,
)

MIX_WINDOWS = 1 << 16  # windows batch_mix looks at


def _as_paths(what: str, paths: object) -> list[str]:
    """A list of paths; one path (str or PathLike) is a list of one, not of its letters."""
    if isinstance(paths, str | os.PathLike):
        return [str(paths)]
    if paths is None or not hasattr(paths, "__iter__"):
        raise InputError(what, f"a list of paths or URIs, not {type(paths).__name__}")
    return [str(p) for p in paths]


def _check_fits(images: list[RasterSource], patch: int) -> None:
    for r in images:
        if r.height < patch or r.width < patch:
            raise InputError(
                r.uri, f"{r.height}x{r.width} px is smaller than the patch size {patch}"
            )


def _given_windows(windows: object, grids: list[TileGrid], patch: int) -> np.ndarray:
    """`windows` as an (N, 3) int64 array of (image, row, col), each a whole patch inside
    its image: a window outside would read past a raster's tiles."""
    w = np.asarray(windows)
    if w.size == 0:
        return np.empty((0, 3), dtype=np.int64)
    if w.ndim != 2 or w.shape[1] != 3 or w.dtype.kind not in "iu":
        raise InputError(f"windows of shape {w.shape} ({w.dtype})",
                         "give (image index, row, col) rows of integers")  # fmt: skip
    w = np.ascontiguousarray(w, dtype=np.int64)
    fid, row, col = w[:, 0], w[:, 1], w[:, 2]
    bad = (fid < 0) | (fid >= len(grids))
    if not bad.any():
        heights = np.array([g.height for g in grids])[fid]
        widths = np.array([g.width for g in grids])[fid]
        bad = (row < 0) | (col < 0) | (row + patch > heights) | (col + patch > widths)
    if bad.any():
        first = tuple(w[int(np.argmax(bad))].tolist())
        where = f"not a {patch}-px patch inside one of the {len(grids)} images"
        raise InputError(f"window {first}", where)
    return w


@dataclass
class StreamStats:
    batches: int = 0
    samples: int = 0
    tile_refs: int = 0  # tiles the batches needed (unique within a batch)
    tiles_decoded: int = 0
    skipped: int = 0  # samples left out with on_error="skip"
    extra: dict = field(default_factory=dict)

    @property
    def cache_hit_rate(self) -> float:
        return 1.0 - self.tiles_decoded / self.tile_refs if self.tile_refs else 0.0


class _Engine:
    """Per-process state: thread pools and cache. Built lazily where batches are made."""

    def __init__(self, rasters: list[RasterSource], cfg: StreamConfig):
        self.cache = TileCache(int(cfg.cache_mb * 1024 * 1024))
        self.fetcher = TileFetcher(
            rasters,
            self.cache,
            cfg.threads_per_process(),
            cfg.merge_gap,
            cfg.io_threads_for(rasters),
            band_first=cfg.band_first_tiles(),
        )
        self.buffers = BatchBuffers(keep=max(1, cfg.prefetch) + 2)
        self.fallback = FallbackReader(rasters)
        self.direct = DirectReader(rasters)
        self.assemblers = ThreadPoolExecutor(
            max_workers=max(1, cfg.prefetch), thread_name_prefix="ocog-batch"
        )

    def close(self) -> None:
        """Stop promptly: batches not started are cancelled, tiles not decoded fail (so a
        batch waiting on one ends), then the batch threads are joined."""
        self.assemblers.shutdown(wait=False, cancel_futures=True)
        self.fetcher.close()
        self.assemblers.shutdown(wait=True)
        self.direct.close()


class CogStream(torch.utils.data.IterableDataset):
    """Batches of patches (and masks) from COGs, at the speed the codecs allow.

    `windows`: the (image, row, col) windows to read, in order (an epoch of a training
    split, a held-out set); None draws `config.length` of them with `config.sampler`.
    `rasters`: the images' then the masks' parsed headers, when the caller has them.
    """

    def __init__(
        self,
        images: list[str],
        masks: list[str] | None = None,
        config: StreamConfig | None = None,
        *,
        windows: np.ndarray | None = None,
        rasters: list[RasterSource] | None = None,
    ):
        super().__init__()
        config = config or StreamConfig()
        self.images = _as_paths("images", images)
        if not self.images:
            raise InputError("images", "none given: pass at least one image path or URI")
        self.masks = _as_paths("masks", masks) if masks else None
        if self.masks is not None and len(self.masks) != len(self.images):
            raise InputError("masks", f"{len(self.masks)} masks for {len(self.images)} images")
        paths = self.images + (self.masks or [])
        self.open_stats: IndexStats | None = None  # what opening the headers cost
        if rasters:
            self.rasters = rasters
        else:
            index = HeaderIndex(config.header_index) if config.header_index else None
            self.rasters, self.open_stats = open_rasters(paths, index)
        n = len(self.images)
        _check_fits(self.rasters[:n], config.patch_size)
        self.cfg = config.resolved(self.rasters[:n], self.rasters[n:])
        self._check_rasters()
        self.bands = (
            list(self.cfg.bands)
            if self.cfg.bands is not None
            else list(range(self.rasters[0].bands))
        )
        for b in self.bands:
            if not 0 <= b < self.rasters[0].bands:
                first = self.rasters[0]
                raise InputError(f"band {b}", f"out of range: {first.uri} has {first.bands} bands")
        self.grids = [r.grid for r in self.rasters[:n]]
        self._windows: WindowSource = (
            EpochWindows(self.grids, self.cfg.sampler_config()) if windows is None
            else windows if isinstance(windows, EpochWindows | GivenWindows)
            else GivenWindows(_given_windows(windows, self.grids, self.cfg.patch_size))
        )  # fmt: skip
        out = self.cfg.output_dtype(self.rasters[0].dtype)
        self.out_dtype = _batch_dtype(out)  # a torch dtype: bfloat16 has no numpy one
        if self.cfg.normalize is not None:
            first = self.rasters[0]
            where = first.uri if self.cfg.bands is not None else f"{first.uri} (all bands)"
            self.cfg.normalize.check_bands(len(self.bands), where)
        self._writer = _writer(self.cfg.normalize, out)
        self._pin = _pin(self.cfg)
        self._engine: _Engine | None = None
        self._engine_pid = -1
        self._lock = threading.Lock()
        self.stats = StreamStats()

    # ---- setup -----------------------------------------------------------------------
    def _check_rasters(self) -> None:
        first = self.rasters[0]
        n = len(self.images)
        for r in self.rasters[1:n]:
            if r.bands != first.bands or r.dtype != first.dtype:
                raise InputError(
                    r.uri,
                    f"{r.bands} bands {r.dtype} differs from {first.uri} "
                    f"({first.bands} bands {first.dtype})",
                )
        for img, msk in zip(self.rasters[:n], self.rasters[n:], strict=False):
            if (msk.height, msk.width) != (img.height, img.width):
                raise InputError(
                    msk.uri,
                    f"mask is {msk.height}x{msk.width}, image "
                    f"{img.uri} is {img.height}x{img.width}",
                )
            if msk.bands != 1:
                raise InputError(msk.uri, f"a mask must have 1 band, it has {msk.bands}")
            diff = _georef(img).difference(_georef(msk), "image", "mask")
            if diff:
                raise InputError(msk.uri, f"does not line up with its image {img.uri}: {diff}")

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_engine"] = None
        state["_engine_pid"] = -1
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def engine(self) -> _Engine:
        pid = os.getpid()
        if self._engine is None or self._engine_pid != pid:
            self._engine = _Engine(self.rasters, self.cfg)
            self._engine_pid = pid
        return self._engine

    def close(self) -> None:
        if self._engine is not None and self._engine_pid == os.getpid():
            self._engine.close()
        self._engine = None

    # ---- batches -----------------------------------------------------------------------
    @property
    def windows(self) -> np.ndarray:
        """The epoch's windows as one (N, 3) array: made whole on each call, so for small
        epochs and checks; the engine itself reads `batch_windows()`, made as it goes."""
        return self._windows.take(0, len(self._windows))

    def batch_windows(self, windows: np.ndarray | None = None) -> Sequence[np.ndarray]:
        """`windows` (default: the stream's epoch) cut into batches, each made when asked."""
        source = self._windows if windows is None else GivenWindows(windows)
        return Batches(source, self.cfg.batch_size, self.cfg.drop_last)

    def __len__(self) -> int:
        return len(self.batch_windows())

    def batch_mix(self) -> float:
        """How mixed the batches are (samplers.batch_mix), over the epoch's first
        MIX_WINDOWS windows: an epoch of 1e9 is never made whole to say so."""
        wins = self._windows.take(0, min(len(self._windows), MIX_WINDOWS))
        return batch_mix(wins, self.grids, self.cfg.batch_size)

    def tile_keys(self, wins: np.ndarray) -> list[tuple[int, int, int, int]]:
        """The (file, plane, ty, tx) tiles a batch of `wins` asks the cache for."""
        return list(self._batch_tiles(wins, self.masks is not None)[1])

    def tile_nbytes(self, key: tuple[int, int, int, int]) -> int:
        """Decoded bytes of one cached tile (one plane of a band-planar file)."""
        r = self.rasters[key[0]]
        return r.tile_bytes // r.bands if r.index.planar == 2 else r.tile_bytes

    def worker_batches(self, chunks: Sequence[np.ndarray], worker: int,
                       workers: int) -> Sequence[np.ndarray]:  # fmt: skip
        """Worker `worker`'s share of `chunks` (of `workers`): whole shuffle groups."""
        if workers <= 1:
            return chunks
        return WorkerShare(chunks, worker, workers, self._group_batches())

    def _batch_tiles(self, wins: np.ndarray, masks: bool) -> tuple[list, dict]:
        """Per window (b, [(file, its tile parts)]: the image, then its mask), and every
        (file, plane, ty, tx) the batch needs from the cache (image and mask tiles; not
        those read directly or through GDAL). Each raster's parts come from its own tile
        grid: a mask may be tiled unlike its image (256 vs 512, striped vs tiled)."""
        n_img, p = len(self.images), self.cfg.patch_size
        planes = self._cached_planes()
        plan: list[tuple[int, list[tuple[int, list]]]] = []
        keys: dict[tuple[int, int, int, int], None] = {}
        for b, (fid, row, col) in enumerate(wins.tolist()):
            img = self.rasters[fid]
            parts = img.window_tiles(row, col, p) if img.fast else []
            files = [(fid, parts)]
            if masks:
                m, mf = self.rasters[fid + n_img], fid + n_img
                same = (m.tile_height, m.tile_width) == (img.tile_height, img.tile_width)
                files.append((mf, parts if same and img.fast else
                              m.window_tiles(row, col, p) if m.fast else []))  # fmt: skip
            for f, fparts in files:
                for pl in planes[f]:
                    for ty, tx, _, _ in fparts:
                        keys[(f, pl, ty, tx)] = None
            plan.append((b, files))
        return plan, keys

    def _cached_planes(self) -> list[list[int]]:
        """Per raster, the planes whose tiles go through the cache (none for files read
        directly or through GDAL)."""
        n_img = len(self.images)
        return [
            []
            if not r.fast or (r.direct and self.cfg.direct)
            else self.bands if (r.index.planar == 2 and f < n_img) else [0]
            for f, r in enumerate(self.rasters)
        ]

    def make_batch(
        self, wins: np.ndarray, position: int | None = None, tiles: tuple | None = None
    ) -> dict[str, torch.Tensor]:
        """Assemble one batch: request every tile, then copy each window's pieces.

        `position` and `tiles` (its `_batch_tiles`) come from `iter_batches`' plan."""
        eng = self.engine()
        cfg = self.cfg
        p, nb = cfg.patch_size, len(wins)
        image, out = self._alloc((nb, len(self.bands), p, p), self.out_dtype,
                                 channels_last=cfg.channels_last)  # fmt: skip
        n_img = len(self.images)
        mask = mask_out = None
        if self.masks is not None:
            mask, mask_out = self._alloc((nb, p, p), _torch_dtype(self.rasters[n_img].dtype))
        all_bands = self.bands == list(range(self.rasters[0].bands))
        plan, keys = tiles or self._batch_tiles(wins, mask is not None)
        found, fresh = eng.fetcher.request(list(keys), position)
        resolve = eng.fetcher.resolve

        skipped: list[int] = []
        direct: dict[int, list[int]] = {}  # file read by pread -> the samples that read it
        for b, files in plan:
            _, row, col = wins[b].tolist()
            try:
                for f, parts in files:
                    if f < n_img:
                        dst, bands, every = out[b], self.bands, all_bands
                    else:
                        dst, bands, every = mask_out[b][None], [0], True
                    if self._reads_direct(f):
                        direct.setdefault(f, []).append(b)
                    self._fill(eng, found, resolve, dst, f, row, col, parts, bands, every)
            except InputError:
                if cfg.on_error != "skip":
                    raise
                skipped.append(b)
        skipped += self._changed_files(eng, direct, set(skipped))
        if skipped:  # leave the unreadable samples out; the batch is smaller, never wrong
            keep = torch.tensor([b for b in range(nb) if b not in set(skipped)], dtype=torch.long)
            image = image.index_select(0, keep)
            if cfg.channels_last:
                image = image.contiguous(memory_format=torch.channels_last)
            mask = mask.index_select(0, keep) if mask is not None else None
            wins = wins[keep.numpy()]
        with self._lock:
            self.stats.batches += 1
            self.stats.samples += nb - len(skipped)
            self.stats.skipped += len(skipped)
            self.stats.tile_refs += len(keys)
            self.stats.tiles_decoded += fresh
        batch = {"image": image, "window": torch.from_numpy(np.ascontiguousarray(wins))}
        if mask is not None:
            batch["mask"] = mask
        batch["stats"] = torch.tensor([len(keys), fresh, len(skipped)], dtype=torch.int64)
        return batch

    def _reads_direct(self, f: int) -> bool:
        r = self.rasters[f]
        return r.fast and r.direct and self.cfg.direct

    def _changed_files(self, eng, direct: dict[int, list[int]], skipped: set[int]) -> list[int]:
        """After a batch's reads: each file read by pread must still be the one opened,
        else its samples may hold another file's bytes: raise, or (on_error="skip") the
        samples that read it, to be left out."""
        bad: dict[int, None] = {}
        for f, samples in direct.items():
            try:
                eng.direct.verify(f)
            except InputError:
                if self.cfg.on_error != "skip":
                    raise
                bad.update((b, None) for b in samples if b not in skipped)
        return list(bad)

    def _alloc(self, shape: tuple[int, ...], dtype: torch.dtype, *, channels_last: bool = False
               ) -> tuple[torch.Tensor, np.ndarray]:  # fmt: skip
        """A batch tensor, pinned for CUDA, and a numpy view of it (bfloat16: its bits as
        int16) for the copies; `channels_last`: (N, C, H, W) over (N, H, W, C) memory.
        (Born in shared memory it was slower: a fresh shm segment per batch costs more
        page faults than the DataLoader's one copy.)

        Unpinned, numpy allocates it: numpy asks for huge pages, torch does not, and a
        batch of 32 MiB or more is a fresh mmap each time, faulted in 4 KiB pages (float32
        32x4x256x256: 10 ms -> 2 ms a batch, 2026-12-02)."""
        stored = (shape[0], *shape[2:], shape[1]) if channels_last else shape
        if self._pin:
            t = torch.empty(stored, dtype=dtype, pin_memory=True)
        else:  # from the engine's idle buffers (stream.buffers): no fresh mapping a batch
            memory = self.engine().buffers.take(stored, _numpy_storage(dtype))
            t = torch.from_numpy(memory).view(dtype)
        if channels_last:
            t = t.permute(0, 3, 1, 2)
        return t, (t.view(torch.int16) if dtype == torch.bfloat16 else t).numpy()

    def _fill(self, eng, found, resolve, dst, f, row, col, parts, bands, all_bands) -> None:
        r = self.rasters[f]
        p = self.cfg.patch_size
        put = self._writer.put if f < len(self.images) else _PLAIN.put  # masks: as stored
        if not r.fast:
            try:
                data = eng.fallback.read(f, row, col, p, bands)
            except InputError:
                raise
            except Exception as exc:  # GDAL's errors name no file: name it, so "skip" works
                cause = redact_uri(str(exc))
                raise InputError(r.uri, f"GDAL cannot read window {row},{col} ({cause})") from exc
            put(dst, data)
            return
        if self._reads_direct(f):
            self._fill_direct(eng, dst, f, row, col, parts, bands, all_bands)
            return
        planar = r.index.planar == 2
        band_first = eng.fetcher.band_first
        delta = eng.fetcher.delta_pending(r)
        hwc = self._channels_last_view(f, dst)
        for ty, tx, dy, dx, sy, sx in self._pieces(r, row, col, parts):
            if planar:
                for i, band in enumerate(bands):
                    tile = resolve((f, band, ty, tx), found[(f, band, ty, tx)])
                    if band_first:
                        part = tile[0, sy, sx]
                    else:
                        part = (undo_delta(tile, sy, sx) if delta else tile[sy, sx])[..., 0]
                    put(dst[i, dy, dx], part, i)
                continue
            tile = resolve((f, 0, ty, tx), found[(f, 0, ty, tx)])
            if band_first:
                src = tile[:, sy, sx]
            elif hwc is not None:  # pixels to pixels, row by row
                src = undo_delta(tile, sy, sx) if delta else tile[sy, sx]
                self._writer.put_hwc(hwc[dy, dx], src if all_bands else src[..., bands])
                continue
            else:
                src = (undo_delta(tile, sy, sx) if delta else tile[sy, sx]).transpose(2, 0, 1)
            put(dst[:, dy, dx], src if all_bands else src[bands])

    def _pieces(self, r: RasterSource, row: int, col: int, parts: list):
        """For each tile a window touches: where its piece goes in the patch (dy, dx) and
        where it comes from in the tile (sy, sx)."""
        p = self.cfg.patch_size
        for ty, tx, y0, x0 in parts:
            ys, ye = max(row, y0), min(row + p, y0 + r.tile_height)
            xs, xe = max(col, x0), min(col + p, x0 + r.tile_width)
            yield (ty, tx, slice(ys - row, ye - row), slice(xs - col, xe - col),
                   slice(ys - y0, ye - y0), slice(xs - x0, xe - x0))  # fmt: skip

    def _channels_last_view(self, f: int, dst: np.ndarray) -> np.ndarray | None:
        """(H, W, C) of an image sample of a channels-last batch (each pixel's bands
        adjacent, as in a pixel-interleaved tile), else None."""
        if not self.cfg.channels_last or f >= len(self.images):
            return None
        return dst.transpose(1, 2, 0)

    def _fill_direct(self, eng, dst, f, row, col, parts, bands, all_bands) -> None:
        r = self.rasters[f]
        planar = r.index.planar == 2
        writer = self._writer if f < len(self.images) else _PLAIN
        hwc = None if planar else self._channels_last_view(f, dst)
        for ty, tx, dy, dx, sy, sx in self._pieces(r, row, col, parts):
            if planar:
                for i, band in enumerate(bands):
                    tile = eng.direct.tile_rows(f, band, ty, tx, sy)
                    if tile is None:
                        dst[i, dy, dx] = self._fills(writer, r, dst)[i]
                    else:
                        writer.put(dst[i, dy, dx], tile[:, sx, 0], i)
                continue
            tile = eng.direct.tile_rows(f, 0, ty, tx, sy)
            if tile is None:
                dst[:, dy, dx] = self._fills(writer, r, dst)
                continue
            if hwc is not None:  # pixels to pixels, row by row
                writer.put_hwc(hwc[dy, dx], tile[:, sx] if all_bands else tile[:, sx][..., bands])
                continue
            src = tile[:, sx].transpose(2, 0, 1)
            writer.put(dst[:, dy, dx], src if all_bands else src[bands])

    @staticmethod
    def _fills(writer: _Writer, r: RasterSource, dst: np.ndarray) -> np.ndarray:
        """(bands, 1, 1): a sparse tile's pixels as the batch holds them, what a decoded
        sparse tile (nodata, else 0, in the source dtype) becomes in the copy."""
        fill = r.index.nodata if r.index.nodata is not None else 0
        out = np.empty((len(dst), 1, 1), dtype=dst.dtype)
        writer.put(out, np.full(out.shape, fill, dtype=r.dtype))
        return out

    def iter_batches(self, chunks: Sequence[np.ndarray] | None = None) -> Iterator[dict]:
        """Yield batches in order, `prefetch` of them assembled ahead on threads.

        Each batch's tiles are worked out once, `plan_ahead` batches before it is made: for
        the cache's eviction plan and for the batch itself. The plan never holds more than
        that look-ahead, so the first batch and the memory do not grow with the epoch."""
        chunks = self.batch_windows() if chunks is None else chunks
        eng = self.engine()
        eng.cache.set_plan({})
        planned: dict[int, tuple] = {}  # position -> (windows, its _batch_tiles)
        ahead: deque = deque()
        depth, horizon = max(1, self.cfg.prefetch), max(1, self.cfg.plan_ahead)

        frontier = [0]  # the next position to plan

        def plan_to(stop: int) -> None:
            with _no_cyclic_gc():
                for i in range(frontier[0], min(stop, len(chunks))):
                    wins = chunks[i]
                    planned[i] = (wins, self._batch_tiles(wins, self.masks is not None))
                    eng.cache.plan_batch(i, planned[i][1][1])
                    frontier[0] = i + 1

        def submit(i: int) -> None:
            plan_to(i + horizon)
            wins, batch_tiles = planned.pop(i)  # the batch holds them from here on
            fut = eng.assemblers.submit(self.make_batch, wins, i, batch_tiles)
            ahead.append((fut, i, batch_tiles[1]))

        nxt = 0
        try:
            while nxt < min(depth, len(chunks)):
                submit(nxt)
                nxt += 1
            while ahead:
                fut, i, keys = ahead.popleft()
                batch = fut.result()
                eng.cache.retire(i, keys)
                if nxt < len(chunks):
                    submit(nxt)
                    nxt += 1
                yield batch
        finally:  # an error, a break or an abandoned iterator: batches not begun never run
            for fut, _, _ in ahead:
                fut.cancel()

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        chunks = self.batch_windows()
        if info is None:
            return self.iter_batches(chunks)
        chunks = self.worker_batches(chunks, info.id, info.num_workers)
        if getattr(self, "_ships_errors", False):  # a worker of `loader()`
            return _ship_errors(self.iter_batches(chunks), info.id)
        return self.iter_batches(chunks)

    def _group_batches(self) -> int:
        """Batches per worker share: whole shuffle groups, so tile reuse stays in a worker."""
        k = self.cfg.patches_per_tile
        if k <= 1:
            return 1
        return max(1, -(-(self.cfg.shuffle_tiles * k) // self.cfg.batch_size))

    def loader(self, windows: np.ndarray | None = None) -> Iterable[dict]:
        """What a training loop iterates: the batches in this process (workers=0) or a
        DataLoader over `cfg.workers` processes, whose errors keep their type (`except
        InputError` and the CLI's one-line `ocog: error:` work as with workers=0).

        `windows`: other windows over the same rasters (the next epoch); in this process
        they are read by this stream's engine, so its decoded tiles carry over."""
        if windows is not None:
            windows = _given_windows(windows, self.grids, self.cfg.patch_size)
        if self.cfg.workers <= 0:
            return self if windows is None else self.iter_batches(self.batch_windows(windows))
        # workers build their own engine over the same windows; pinning happens in the
        # main process if asked
        view = CogStream(self.images, self.masks, replace(self.cfg, pin_memory=False),
                         windows=self._windows if windows is None else windows,
                         rasters=self.rasters)  # fmt: skip
        view._ships_errors = True
        return _OcogLoader(
            view,
            batch_size=None,
            num_workers=view.cfg.workers,
            prefetch_factor=max(1, view.cfg.prefetch),
            persistent_workers=False,
            multiprocessing_context=view.cfg.start_method,
            pin_memory=_pin(self.cfg),
        )


def _georef(r: RasterSource) -> Georef:
    """A raster's CRS and transform: from its parsed header, or for a GDAL-read one from
    its first directory, so both sides of a pair compare what their files store."""
    if r.index is not None:
        return r.index.georef
    return read_georef(open_source(r.gdal_uri or r.uri))


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Building the plan allocates a few small tuples per window and frees none: the cyclic
    collector only rescans them (it took half to two thirds of the plan's time, 20,000
    windows: 0.20-0.45 s -> 0.06-0.10 s, 2026-12-01)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _pin(cfg: StreamConfig) -> bool:
    """Batches in pinned memory: as configured, else when CUDA is present."""
    return cfg.pin_memory if cfg.pin_memory is not None else torch.cuda.is_available()


def _batch_dtype(name: str) -> torch.dtype:
    return torch.bfloat16 if name == "bfloat16" else _torch_dtype(np.dtype(name))


def _numpy_storage(dtype: torch.dtype) -> np.dtype:
    """The numpy dtype a batch of `dtype` is allocated in (bfloat16: int16, its bits)."""
    if dtype == torch.bfloat16:
        return np.dtype(np.int16)
    return torch.empty(0, dtype=dtype).numpy().dtype


def _torch_dtype(dt: np.dtype) -> torch.dtype:
    # by its canonical name: torch refuses numpy's alias types (ulonglong for uint64)
    native = np.dtype(np.dtype(dt).newbyteorder("=").str)
    return torch.from_numpy(np.empty(0, dtype=native)).dtype


@dataclass(frozen=True)
class _Writer:
    """How a piece of decoded pixels lands in the batch: a casting copy, or that copy
    with the per-band `x * scale + offset` fused in (no second pass over the batch).

    float32/float64 batches: multiply into the batch, casting the source as it is read,
    then add in place while the piece is in cache; the same operations, in the same
    order, as `x.astype(float32) * float32(scale) + float32(offset)`. float16/bfloat16:
    that, in float32, into a scratch piece then rounded into the batch as torch's
    `.to(dtype)` rounds it."""

    scale: np.ndarray | None = None  # (bands, 1, 1) in `compute`; None: no normalisation
    offset: np.ndarray | None = None
    compute: np.dtype = np.dtype(np.float32)
    rounds_to: str | None = None  # "float16" / "bfloat16": computed in float32 first

    def put(self, dst: np.ndarray, src: np.ndarray, band: int | None = None) -> None:
        """Copy `src` into `dst` (same shape): pixels of selected band `band`, or of every
        selected band (first axis) when None."""
        if self.rounds_to is None:
            self._affine(dst, src, band)
            return
        stage = np.empty(src.shape, dtype=np.float32)
        self._affine(stage, src, band)
        if self.rounds_to == "bfloat16":
            _round_to_bf16(dst, stage)
        else:  # numpy's float32 -> float16 is torch's, bit for bit (all 2**32 checked)
            np.copyto(dst, stage, casting="unsafe")

    def put_hwc(self, dst: np.ndarray, src: np.ndarray) -> None:
        """Copy `src` into `dst`, both (h, w, selected bands) with each pixel's bands
        adjacent (a pixel-interleaved tile, a channels-last batch): as h rows of w x bands
        values, the scale and offset repeated along a row, so the copy runs along memory
        instead of one band at a time (numpy's strided gather was ~2.6e9 values/s)."""
        h, w, c = dst.shape
        rows = self if self.scale is None else self._along_rows(w)
        rows.put(_as_rows(dst, h, w * c), src.reshape(h, w * c))  # src: a copy if need be

    def _along_rows(self, width: int) -> _Writer:
        """This writer for rows of `width` pixels x bands: scale and offset as (1, w*c)."""
        def tiled(a: np.ndarray) -> np.ndarray:
            return np.tile(a.reshape(-1), width)[None]

        return replace(self, scale=tiled(self.scale), offset=tiled(self.offset))

    def _affine(self, out: np.ndarray, src: np.ndarray, band: int | None) -> None:
        if self.scale is None:
            np.copyto(out, src, casting="unsafe")
            return
        scale = self.scale if band is None else self.scale[band]
        offset = self.offset if band is None else self.offset[band]
        np.multiply(src, scale, out=out, dtype=self.compute, casting="unsafe")
        np.add(out, offset, out=out)


def _as_rows(a: np.ndarray, h: int, n: int) -> np.ndarray:
    """`a` (h, w, c) as an (h, w*c) view; an error, never a silent copy, if it cannot be."""
    view = a.view()
    view.shape = (h, n)  # raises where a reshape would copy (a write would then be lost)
    return view


_PLAIN = _Writer()  # masks, and images kept as they are stored or only cast
# torch runs an op on fewer values than this on the calling thread (at::internal::
# GRAIN_SIZE); a larger one goes to its OpenMP team, which on a busy 2-core machine made
# a bfloat16 patch wait 6.5 ms instead of 0.07 ms (2026-12-02)
_GRAIN = 32768


def _round_to_bf16(dst: np.ndarray, stage: np.ndarray) -> None:
    """`stage` (float32) rounded into `dst` (bfloat16 bits as int16) by torch's rounding,
    in runs small enough that torch converts them on this thread: rows of every band
    at once, else of one band (a patch row wider than a run goes to torch's team)."""
    if dst.ndim == 2:
        dst, stage = dst[None], stage[None]
    bands, height, width = dst.shape
    if bands > 1 and bands * width >= _GRAIN:
        for b in range(bands):
            _round_to_bf16(dst[b], stage[b])
        return
    rows = max(1, (_GRAIN - 1) // max(1, bands * width))
    for r in range(0, height, rows):  # numpy slices: a quarter of torch's indexing time
        d = torch.from_numpy(dst[:, r : r + rows]).view(torch.bfloat16)
        d.copy_(torch.from_numpy(stage[:, r : r + rows]))


def _writer(norm: Normalization | None, out: str) -> _Writer:
    """The copy for image batches of dtype name `out`."""
    rounds_to = out if out in ("float16", "bfloat16") else None
    if norm is None:
        return _Writer(rounds_to=rounds_to)
    compute = np.dtype(np.float64 if out == "float64" else np.float32)
    return _Writer(
        scale=np.array(norm.scale, dtype=compute)[:, None, None],
        offset=np.array(norm.offset, dtype=compute)[:, None, None],
        compute=compute,
        rounds_to=rounds_to,
    )


def make_stream(images: list[str], masks: list[str] | None = None, **config) -> CogStream:
    """Convenience: `make_stream(paths, sampler="block", batch_size=32, ...)`."""
    return CogStream(images, masks, StreamConfig(**config))


# ---- ocog errors across the worker boundary ----------------------------------------------
# torch re-raises a worker's exception as exc_type(traceback text), and InputError(what,
# cause) cannot be built from one string: every ocog error arrived as a RuntimeError with
# an 81-line message. The workers of `CogStream.loader` send the error itself instead.


@dataclass(frozen=True)
class _WorkerError:
    """An ocog error raised in a DataLoader worker, sent in place of the next batch."""

    error: OcogError


def _ship_errors(batches: Iterator[dict], worker: int) -> Iterator[dict | _WorkerError]:
    """`batches`, then the ocog error that ended them, if it can be pickled."""
    try:
        yield from batches
    except OcogError as exc:
        exc.add_note(f"raised in DataLoader worker {worker}:\n{''.join(format_exception(exc))}")
        if not _picklable(exc):
            raise  # torch at least reports it
        yield _WorkerError(exc)


def _picklable(obj: object) -> bool:
    try:
        pickle.dumps(obj)
    except Exception:  # noqa: BLE001 - whatever pickling raises
        return False
    return True


class _OcogLoader(torch.utils.data.DataLoader):
    """A DataLoader that re-raises a worker's ocog error as itself: type, message, fields."""

    def __iter__(self):
        for item in super().__iter__():  # unnamed: an error drops it, so workers shut down
            if isinstance(item, _WorkerError):
                raise item.error
            yield item
