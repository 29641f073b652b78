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

import contextlib
import gc
import math
import numbers
import os
import pickle
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from traceback import format_exception

import numpy as np
import torch

from ocog_lib.cog.decode import undo_delta
from ocog_lib.cog.tiff_index import Georef, read_georef
from ocog_lib.errors import InputError, OcogError
from ocog_lib.secrets import redact_uri
from ocog_lib.storage import open_source
from ocog_lib.stream.cache import TileCache
from ocog_lib.stream.rasters import (
    DirectReader,
    FallbackReader,
    RasterSource,
    TileFetcher,
    open_raster,
)
from ocog_lib.stream.samplers import (
    SAMPLERS,
    RasterGrid,
    SamplerConfig,
    batch_mix,
    link_reuse,
    sample_windows,
    tiles_per_visit,
)

# integer fields: (name, smallest value, what is allowed)
_INT_FIELDS = (
    ("patch_size", 1, "a positive integer"),
    ("batch_size", 1, "a positive integer"),
    ("length", 1, "a positive integer"),
    ("seed", 0, "an integer >= 0"),
    ("workers", 0, "0 (this process) or more"),
    ("threads", 0, "0 (auto) or more"),
    ("prefetch", 0, "0 or more"),
    ("patches_per_tile", 0, "0 (auto) or positive"),
    ("shuffle_tiles", 1, "a positive integer"),
    ("merge_gap", 0, "0 or more bytes"),
    ("io_threads", -1, "-1 (auto) or more"),
)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_bands(bands: object) -> None:
    if bands is None:
        return
    if isinstance(bands, str | bytes) or not hasattr(bands, "__iter__"):
        raise InputError(f"bands {bands!r}", "a sequence of 0-based band indices, or None")
    values = list(bands)
    if not values:
        raise InputError("bands ()", "empty: give at least one band, or None for all")
    for b in values:
        if not _is_int(b) or b < 0:
            raise InputError(f"band {b!r}", "a band index is an integer >= 0 (0-based)")
    dup = sorted({b for b in values if values.count(b) > 1})
    if dup:
        raise InputError(f"bands {tuple(values)}", f"band(s) {dup} given more than once")


def _check_dtype(dtype: object) -> None:
    if dtype is None:
        return
    try:
        dt = np.dtype(dtype)
        ok = dt.kind in "biuf" and _torch_dtype(dt) is not None
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InputError(f"dtype {dtype!r}", "not a numeric dtype (e.g. float32, uint16, uint8)")


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
        """Every field checked before any file opens, the error naming field and value."""
        if self.sampler not in SAMPLERS:
            raise InputError(f"sampler {self.sampler!r}", f"unknown; choose one of {SAMPLERS}")
        for name, lowest, allowed in _INT_FIELDS:
            value = getattr(self, name)
            if not _is_int(value) or value < lowest:
                raise InputError(f"{name} {value!r}", f"must be {allowed}")
        mb = self.cache_mb
        if isinstance(mb, bool) or not isinstance(mb, numbers.Real) or not mb >= 0:
            raise InputError(f"cache_mb {mb!r}", "must be a number of MB >= 0 (0: no tile cache)")
        if not math.isfinite(mb):
            raise InputError(f"cache_mb {mb!r}", "must be finite")
        _check_bands(self.bands)
        _check_dtype(self.dtype)
        if self.on_error not in ("raise", "skip"):
            raise InputError(f"on_error '{self.on_error}'", "choose 'raise' or 'skip'")
        if self.pin_memory not in (None, True, False):
            raise InputError(f"pin_memory {self.pin_memory!r}", "must be None, True or False")
        if self.start_method is not None:
            import multiprocessing

            methods = multiprocessing.get_all_start_methods()
            if self.start_method not in methods:
                raise InputError(f"start_method {self.start_method!r}", f"choose one of {methods}")

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
            # a visit's tiles, image and mask, each counted on its own tile grid
            visit = max(
                self._visit_bytes(r, r) + (self._visit_bytes(r, masks[i]) if masks else 0)
                for i, r in enumerate(rasters)
            )
            shuffle = max(1, min(shuffle, int(self.cache_mb * 1024 * 1024) // visit))
        return replace(self, patches_per_tile=k, shuffle_tiles=shuffle)

    def _visit_bytes(self, anchor: RasterSource, r: RasterSource) -> int:
        """Decoded bytes of the tiles of `r` that one visit anchored in a tile of `anchor`
        (the image) can touch."""
        down = tiles_per_visit(self.sampler, self.patch_size, r.tile_height, anchor.tile_height)
        across = tiles_per_visit(self.sampler, self.patch_size, r.tile_width, anchor.tile_width)
        return down * across * r.tile_bytes

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
        config = config or StreamConfig()
        self.images = _as_paths("images", images)
        if not self.images:
            raise InputError("images", "none given: pass at least one image path or URI")
        self.masks = _as_paths("masks", masks) if masks else None
        if self.masks is not None and len(self.masks) != len(self.images):
            raise InputError("masks", f"{len(self.masks)} masks for {len(self.images)} images")
        paths = self.images + (self.masks or [])
        self.rasters = rasters or [open_raster(p) for p in paths]
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
        for b, files in plan:
            _, row, col = wins[b].tolist()
            try:
                for f, parts in files:
                    if f < n_img:
                        dst, bands, every = out[b], self.bands, all_bands
                    else:
                        dst, bands, every = mask.numpy()[b][None], [0], True
                    self._fill(eng, found, resolve, dst, f, row, col, parts, bands, every)
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
            try:
                data = eng.fallback.read(f, row, col, p, bands)
            except InputError:
                raise
            except Exception as exc:  # GDAL's errors name no file: name it, so "skip" works
                cause = redact_uri(str(exc))
                raise InputError(r.uri, f"GDAL cannot read window {row},{col} ({cause})") from exc
            np.copyto(dst, data, casting="unsafe")
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
                    tile = eng.direct.tile_rows(f, band, ty, tx, sy)
                    if tile is None:
                        dst[i, dy, dx] = fill
                    else:
                        np.copyto(dst[i, dy, dx], tile[:, sx, 0], casting="unsafe")
                continue
            tile = eng.direct.tile_rows(f, 0, ty, tx, sy)
            if tile is None:
                dst[:, dy, dx] = fill
                continue
            src = tile[:, sx].transpose(2, 0, 1)
            np.copyto(dst[:, dy, dx], src if all_bands else src[bands], casting="unsafe")

    def iter_batches(self, chunks: list[np.ndarray] | None = None) -> Iterator[dict]:
        """Yield batches in order, `prefetch` of them assembled ahead on threads."""
        chunks = self.batch_windows() if chunks is None else chunks
        eng = self.engine()
        # each batch's tiles, worked out once: for the cache's plan and for the batch itself
        with _no_cyclic_gc():
            tiles = [self._batch_tiles(w, self.masks is not None) for w in chunks]
            eng.cache.set_plan(_tile_plan([keys for _, keys in tiles]))
        ahead: deque = deque()
        depth = max(1, self.cfg.prefetch)

        def submit(i: int) -> None:
            batch_tiles, tiles[i] = tiles[i], None  # the batch holds them from here on
            ahead.append(eng.assemblers.submit(self.make_batch, chunks[i], i, batch_tiles))

        nxt = 0
        try:
            while nxt < min(depth, len(chunks)):
                submit(nxt)
                nxt += 1
            while ahead:
                batch = ahead.popleft().result()
                if nxt < len(chunks):
                    submit(nxt)
                    nxt += 1
                yield batch
        finally:  # an error, a break or an abandoned iterator: batches not begun never run
            for fut in ahead:
                fut.cancel()

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        chunks = self.batch_windows()
        if info is None:
            return self.iter_batches(chunks)
        if info.num_workers > 1:
            chunks = [
                c
                for i, c in enumerate(chunks)
                if (i // self._group_batches()) % info.num_workers == info.id
            ]
        if getattr(self, "_ships_errors", False):  # a worker of `worker_loader`
            return _ship_errors(self.iter_batches(chunks), info.id)
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
        pin = self.cfg.pin_memory if self.cfg.pin_memory is not None else torch.cuda.is_available()
        # workers build their own engine; pinning happens in the main process if asked
        return worker_loader(replace_config(self, pin_memory=False), pin)


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


# ---- ocog errors across the worker boundary ----------------------------------------------
# torch re-raises a worker's exception as exc_type(traceback text), and InputError(what,
# cause) cannot be built from one string: every ocog error arrived as a RuntimeError with
# an 81-line message. The workers of `worker_loader` send the error itself instead.


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


def worker_loader(view: CogStream, pin: bool) -> torch.utils.data.DataLoader:
    """A DataLoader over `view` in `view.cfg.workers` processes, whose errors keep their type
    (`except InputError` and the CLI's one-line `ocog: error:` work as with workers=0)."""
    view._ships_errors = True
    return _OcogLoader(
        view,
        batch_size=None,
        num_workers=view.cfg.workers,
        prefetch_factor=max(1, view.cfg.prefetch),
        persistent_workers=False,
        multiprocessing_context=view.cfg.start_method,
        pin_memory=pin,
    )
