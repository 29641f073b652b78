"""The streaming engine: COG windows to ready batch tensors.

`CogStream` parses every header once in the parent, draws windows with a sampler, and
delivers whole batches: `{"image": (B, C, H, W), "mask": (B, H, W), "window": (B, 3)}`.
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

import os
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ocog_lib.errors import InputError
from ocog_lib.stream.cache import TileCache
from ocog_lib.stream.decode import undo_delta
from ocog_lib.stream.reader import (
    DirectReader,
    FallbackReader,
    RasterSource,
    TileFetcher,
    open_raster,
)
from ocog_lib.stream.samplers import (
    RasterGrid,
    SamplerConfig,
    batch_mix,
    link_reuse,
    sample_windows,
    tiles_per_visit,
)


@dataclass(frozen=True)
class StreamConfig:
    sampler: str = "random"
    patch_size: int = 256
    batch_size: int = 32
    length: int = 1024  # windows per epoch (grid: all windows)
    seed: int = 0
    workers: int = 0  # DataLoader processes; 0 = threads in this process
    threads: int = 0  # decode threads per process; 0 = cores / processes
    # batches assembled ahead, per process: 4 kept the decode threads busy between batches
    # (2 -> 4: +10-18% on every compressed variant, +100-200 MB RSS)
    prefetch: int = 4
    bands: tuple[int, ...] | None = None  # 0-based band indices; None = all
    dtype: str | None = None  # output dtype, e.g. "float32"; None = source dtype
    cache_mb: float = 128.0  # decoded-tile cache per process
    # windows per decoded tile (see samplers); 0 = auto: 1 for local files, and for remote
    # ones enough that the link carries fewer bytes than the patches (samplers.link_reuse)
    patches_per_tile: int = 0
    shuffle_tiles: int = 16  # tile visits mixed together when reusing tiles
    drop_last: bool = False
    pin_memory: bool | None = None  # None = when CUDA is available
    start_method: str | None = None  # DataLoader multiprocessing context, e.g. "spawn"
    merge_gap: int = 0  # bytes: merge reads of tiles this close together
    direct: bool = True  # uncompressed local files: copy patches from the page cache
    io_threads: int = -1  # requests in flight per process for remote sources; -1 = auto
    on_error: str = "raise"  # "skip": leave out a sample whose tiles cannot be read, count it

    def __post_init__(self) -> None:
        if self.on_error not in ("raise", "skip"):
            raise InputError(f"on_error '{self.on_error}'", "choose 'raise' or 'skip'")
        if self.patches_per_tile < 0:
            raise InputError(
                f"patches_per_tile {self.patches_per_tile}", "must be 0 (auto) or positive"
            )

    def resolved(self, rasters: list[RasterSource], masks: list[RasterSource] = ()) -> StreamConfig:
        """This config with tile reuse decided for these rasters (image rasters, then masks).

        `patches_per_tile` 0 (auto) becomes 1 for local files and `link_reuse` for remote
        ones. With reuse, `shuffle_tiles` is capped at the visits whose tiles the cache
        holds at once: a shuffle group's tiles all stay live until its last window, and a
        group larger than the cache refetches them (random k=32 over 512-px tiles: 16
        visits fit 128 MB; 32 moved 3x the bytes).
        """
        k = self.patches_per_tile
        if k == 0:
            k = 1
            if any(r.remote for r in rasters):
                k = max(
                    link_reuse(self.sampler, self.patch_size, r.tile_height, r.tile_width)
                    for r in rasters
                )
        shuffle = self.shuffle_tiles
        if k > 1 and self.sampler != "grid" and rasters:
            # a visit's tiles, image and mask alike (masks share the images' grid)
            visit = max(
                tiles_per_visit(self.sampler, self.patch_size, r.tile_height)
                * tiles_per_visit(self.sampler, self.patch_size, r.tile_width)
                * (r.tile_bytes + max((m.tile_bytes for m in masks), default=0))
                for r in rasters
            )
            shuffle = max(1, min(shuffle, int(self.cache_mb * 1024 * 1024) // visit))
        return replace(self, patches_per_tile=k, shuffle_tiles=shuffle)

    def sampler_config(self) -> SamplerConfig:
        return SamplerConfig(
            kind=self.sampler,
            patch_size=self.patch_size,
            length=self.length,
            seed=self.seed,
            patches_per_tile=self.patches_per_tile,
            shuffle_tiles=self.shuffle_tiles,
        )

    def io_threads_for(self, rasters: list[RasterSource]) -> int:
        """Remote files want many requests in flight (latency, not CPU, is the limit)."""
        if self.io_threads >= 0:
            return self.io_threads
        return 32 if any(r.remote for r in rasters) else 0

    def band_first_tiles(self) -> bool:
        """Transpose a whole tile once when it serves several patches; else per patch."""
        return self.patches_per_tile > 2

    def threads_per_process(self) -> int:
        if self.threads > 0:
            return self.threads
        return max(1, (os.cpu_count() or 1) // max(1, self.workers))


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
        self.fallback = FallbackReader(rasters)
        self.direct = DirectReader(rasters, budget=self.cache.max_bytes)
        self.assemblers = ThreadPoolExecutor(
            max_workers=max(1, cfg.prefetch), thread_name_prefix="ocog-batch"
        )

    def close(self) -> None:
        self.assemblers.shutdown(wait=True, cancel_futures=True)
        self.fetcher.close()
        self.direct.close()


class CogStream(torch.utils.data.IterableDataset):
    """Batches of patches (and masks) from COGs, at the speed the codecs allow."""

    def __init__(
        self,
        images: list[str],
        masks: list[str] | None = None,
        config: StreamConfig | None = None,
        *,
        rasters: list[RasterSource] | None = None,
    ):
        super().__init__()
        self.images = [str(p) for p in images]
        self.masks = [str(p) for p in masks] if masks else None
        if self.masks is not None and len(self.masks) != len(self.images):
            raise InputError("masks", f"{len(self.masks)} masks for {len(self.images)} images")
        paths = self.images + (self.masks or [])
        self.rasters = rasters or [open_raster(p) for p in paths]
        n = len(self.images)
        self.cfg = (config or StreamConfig()).resolved(self.rasters[:n], self.rasters[n:])
        self._check_rasters()
        self.bands = (
            list(self.cfg.bands)
            if self.cfg.bands is not None
            else list(range(self.rasters[0].bands))
        )
        for b in self.bands:
            if not 0 <= b < self.rasters[0].bands:
                raise InputError(f"band {b}", f"out of range for {self.rasters[0].bands} bands")
        self.grids = [
            RasterGrid(r.height, r.width, r.tile_height, r.tile_width) for r in self.rasters[:n]
        ]
        self.windows = sample_windows(self.grids, self.cfg.sampler_config())
        self.out_dtype = np.dtype(self.cfg.dtype) if self.cfg.dtype else self.rasters[0].dtype
        self._pin = (
            self.cfg.pin_memory if self.cfg.pin_memory is not None else torch.cuda.is_available()
        )
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
    def batch_windows(self) -> list[np.ndarray]:
        b = self.cfg.batch_size
        chunks = [self.windows[i : i + b] for i in range(0, len(self.windows), b)]
        if self.cfg.drop_last and chunks and len(chunks[-1]) < b:
            chunks.pop()
        return chunks

    def __len__(self) -> int:
        return len(self.batch_windows())

    def batch_mix(self) -> float:
        return batch_mix(self.windows, self.grids, self.cfg.batch_size)

    def _batch_tiles(self, wins: np.ndarray, masks: bool) -> tuple[list, dict]:
        """Per window (b, file, tile parts), and every (file, plane, ty, tx) the batch needs
        from the cache (image and mask tiles; not those read directly or through GDAL)."""
        n_img = len(self.images)
        plan: list[tuple[int, int, list]] = []
        keys: dict[tuple[int, int, int, int], None] = {}
        for b, (fid, row, col) in enumerate(wins.tolist()):
            parts = self.rasters[fid].window_tiles(row, col, self.cfg.patch_size)
            plan.append((b, fid, parts))
            for f in (fid, fid + n_img) if masks else (fid,):
                r = self.rasters[f]
                if not r.fast or (r.direct and self.cfg.direct):
                    continue
                planes = self.bands if (r.index.planar == 2 and f < n_img) else [0]
                for pl in planes:
                    for ty, tx, _, _ in parts:
                        keys[(f, pl, ty, tx)] = None
        return plan, keys

    def make_batch(
        self, wins: np.ndarray, position: int | None = None, tiles: tuple | None = None
    ) -> dict[str, torch.Tensor]:
        """Assemble one batch: request every tile, then copy each window's pieces.

        `position` and `tiles` (its `_batch_tiles`) come from `iter_batches`' plan."""
        eng = self.engine()
        cfg = self.cfg
        p, nb = cfg.patch_size, len(wins)
        image = self._alloc((nb, len(self.bands), p, p), self.out_dtype)
        out = image.numpy()
        n_img = len(self.images)
        mask = None
        if self.masks is not None:
            mask = self._alloc((nb, p, p), self.rasters[n_img].dtype)
        all_bands = self.bands == list(range(self.rasters[0].bands))
        plan, keys = tiles or self._batch_tiles(wins, mask is not None)
        found, fresh = eng.fetcher.request(list(keys), position)
        resolve = eng.fetcher.resolve

        skipped: list[int] = []
        for b, fid, parts in plan:
            _, row, col = wins[b].tolist()
            try:
                self._fill(eng, found, resolve, out[b], fid, row, col, parts, self.bands, all_bands)
                if mask is not None:
                    m = mask.numpy()[b][None]
                    self._fill(eng, found, resolve, m, fid + n_img, row, col, parts, [0], True)
            except InputError:
                if cfg.on_error != "skip":
                    raise
                skipped.append(b)
        if skipped:  # leave the unreadable samples out; the batch is smaller, never wrong
            keep = torch.tensor([b for b in range(nb) if b not in set(skipped)], dtype=torch.long)
            image = image.index_select(0, keep)
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

    def _alloc(self, shape: tuple[int, ...], dtype: np.dtype) -> torch.Tensor:
        """A batch tensor, pinned for CUDA. (Born in shared memory it was slower: a fresh
        shm segment per batch costs more page faults than the DataLoader's one copy.)"""
        return torch.empty(shape, dtype=_torch_dtype(dtype), pin_memory=self._pin)

    def _fill(self, eng, found, resolve, dst, f, row, col, parts, bands, all_bands) -> None:
        r = self.rasters[f]
        p = self.cfg.patch_size
        if not r.fast:
            np.copyto(dst, eng.fallback.read(f, row, col, p, bands), casting="unsafe")
            return
        if r.direct and self.cfg.direct:
            self._fill_direct(eng, dst, f, row, col, parts, bands, all_bands)
            return
        planar = r.index.planar == 2
        band_first = eng.fetcher.band_first
        delta = eng.fetcher.delta_pending(r)
        for ty, tx, dy, dx, sy, sx in self._pieces(r, row, col, parts):
            if planar:
                for i, band in enumerate(bands):
                    tile = resolve((f, band, ty, tx), found[(f, band, ty, tx)])
                    if band_first:
                        part = tile[0, sy, sx]
                    else:
                        part = (undo_delta(tile, sy, sx) if delta else tile[sy, sx])[..., 0]
                    np.copyto(dst[i, dy, dx], part, casting="unsafe")
                continue
            tile = resolve((f, 0, ty, tx), found[(f, 0, ty, tx)])
            if band_first:
                src = tile[:, sy, sx]
            else:
                src = (undo_delta(tile, sy, sx) if delta else tile[sy, sx]).transpose(2, 0, 1)
            np.copyto(dst[:, dy, dx], src if all_bands else src[bands], casting="unsafe")

    def _pieces(self, r: RasterSource, row: int, col: int, parts: list):
        """For each tile a window touches: where its piece goes in the patch (dy, dx) and
        where it comes from in the tile (sy, sx)."""
        p = self.cfg.patch_size
        for ty, tx, y0, x0 in parts:
            ys, ye = max(row, y0), min(row + p, y0 + r.tile_height)
            xs, xe = max(col, x0), min(col + p, x0 + r.tile_width)
            yield (ty, tx, slice(ys - row, ye - row), slice(xs - col, xe - col),
                   slice(ys - y0, ye - y0), slice(xs - x0, xe - x0))  # fmt: skip

    def _fill_direct(self, eng, dst, f, row, col, parts, bands, all_bands) -> None:
        r = self.rasters[f]
        planar = r.index.planar == 2
        fill = r.index.nodata if r.index.nodata is not None else 0
        for ty, tx, dy, dx, sy, sx in self._pieces(r, row, col, parts):
            if planar:
                for i, band in enumerate(bands):
                    tile = eng.direct.tile(f, band, ty, tx, sy.stop - sy.start)
                    if tile is None:
                        dst[i, dy, dx] = fill
                    else:
                        np.copyto(dst[i, dy, dx], tile[sy, sx, 0], casting="unsafe")
                continue
            tile = eng.direct.tile(f, 0, ty, tx, sy.stop - sy.start)
            if tile is None:
                dst[:, dy, dx] = fill
                continue
            src = tile[sy, sx].transpose(2, 0, 1)
            np.copyto(dst[:, dy, dx], src if all_bands else src[bands], casting="unsafe")

    def iter_batches(self, chunks: list[np.ndarray] | None = None) -> Iterator[dict]:
        """Yield batches in order, `prefetch` of them assembled ahead on threads."""
        chunks = self.batch_windows() if chunks is None else chunks
        eng = self.engine()
        # each batch's tiles, worked out once: for the cache's plan and for the batch itself
        tiles = [self._batch_tiles(w, self.masks is not None) for w in chunks]
        eng.cache.set_plan(_tile_plan([keys for _, keys in tiles]))
        ahead: deque = deque()
        depth = max(1, self.cfg.prefetch)

        def submit(i: int) -> None:
            batch_tiles, tiles[i] = tiles[i], None  # the batch holds them from here on
            ahead.append(eng.assemblers.submit(self.make_batch, chunks[i], i, batch_tiles))

        nxt = 0
        while nxt < min(depth, len(chunks)):
            submit(nxt)
            nxt += 1
        while ahead:
            batch = ahead.popleft().result()
            if nxt < len(chunks):
                submit(nxt)
                nxt += 1
            yield batch

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        chunks = self.batch_windows()
        if info is not None and info.num_workers > 1:
            chunks = [
                c
                for i, c in enumerate(chunks)
                if (i // self._group_batches()) % info.num_workers == info.id
            ]
        return self.iter_batches(chunks)

    def _group_batches(self) -> int:
        """Batches per worker share: whole shuffle groups, so tile reuse stays in a worker."""
        k = self.cfg.patches_per_tile
        if k <= 1:
            return 1
        return max(1, -(-(self.cfg.shuffle_tiles * k) // self.cfg.batch_size))

    def loader(self) -> torch.utils.data.DataLoader | CogStream:
        """What a training loop iterates: self (workers=0) or a DataLoader over workers."""
        if self.cfg.workers <= 0:
            return self
        ctx = self.cfg.start_method
        pin = self.cfg.pin_memory if self.cfg.pin_memory is not None else torch.cuda.is_available()
        # workers build their own engine; pinning happens in the main process if asked
        worker_view = replace_config(self, pin_memory=False)
        return torch.utils.data.DataLoader(
            worker_view,
            batch_size=None,
            num_workers=self.cfg.workers,
            prefetch_factor=max(1, self.cfg.prefetch),
            persistent_workers=False,
            multiprocessing_context=ctx,
            pin_memory=pin,
        )


def _tile_plan(per_batch: list[dict]) -> dict[tuple, list[int]]:
    """For every tile, the positions of the batches (their tile keys, in order) using it."""
    uses: dict[tuple, list[int]] = {}
    for i, keys in enumerate(per_batch):
        for k in keys:
            uses.setdefault(k, []).append(i)
    return uses


def replace_config(stream: CogStream, **changes) -> CogStream:
    """A copy of `stream` with some config fields changed, reusing its parsed headers."""
    return CogStream(
        stream.images, stream.masks, replace(stream.cfg, **changes), rasters=stream.rasters
    )


def _torch_dtype(dt: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dtype=np.dtype(dt).newbyteorder("="))).dtype


def make_stream(images: list[str], masks: list[str] | None = None, **config) -> CogStream:
    """Convenience: `make_stream(paths, sampler="block", batch_size=32, ...)`."""
    return CogStream(images, masks, StreamConfig(**config))
