"""The engine's settings: `StreamConfig`, its defaults and its checks.

Apart from the engine (no torch, no rasterio) so that what reads only the settings,
the CLI building its flags above all, does not pay torch's seconds of import.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from ocog_lib.errors import InputError
from ocog_lib.stream.normalize import FLOAT_DTYPES, Normalization
from ocog_lib.stream.samplers import SAMPLERS, SamplerConfig, link_reuse, tiles_per_visit

if TYPE_CHECKING:
    from ocog_lib.stream.rasters import RasterSource

# integer fields: (name, smallest value, what is allowed)
_INT_FIELDS = (
    ("patch_size", 1, "a positive integer"),
    ("batch_size", 1, "a positive integer"),
    ("length", 1, "a positive integer"),
    ("seed", 0, "an integer >= 0"),
    ("workers", 0, "0 (this process) or more"),
    ("threads", 0, "0 (auto) or more"),
    ("prefetch", 0, "0 or more"),
    ("plan_ahead", 1, "a positive number of batches"),
    ("patches_per_tile", 0, "0 (auto) or positive"),
    ("shuffle_tiles", 1, "a positive integer"),
    ("merge_gap", 0, "0 or more bytes"),
    ("io_threads", -1, "-1 (auto) or more"),
)
# (kind, bytes) of the numpy dtypes a torch tensor can hold: a batch is allocated in one
OUTPUT_DTYPES = frozenset(
    [("b", 1), ("f", 2), ("f", 4), ("f", 8)] + [(k, n) for k in "iu" for n in (1, 2, 4, 8)]
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


def _is_bf16(dtype: object) -> bool:
    return isinstance(dtype, str) and dtype == "bfloat16"


def _check_dtype(dtype: object) -> None:
    if dtype is None or _is_bf16(dtype):  # numpy has no bfloat16; torch batches do
        return
    try:
        dt = np.dtype(dtype)
        ok = (dt.kind, dt.itemsize) in OUTPUT_DTYPES
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InputError(f"dtype {dtype!r}", "not a numeric dtype (e.g. float32, uint16, uint8)")


def _check_normalize(norm: Normalization, dtype: object, bands: tuple | None) -> None:
    """Normalised pixels are fractions: an integer batch would truncate them."""
    if dtype is not None and output_dtype_name(dtype) not in FLOAT_DTYPES:
        raise InputError(
            f"dtype {dtype!r}", f"normalize needs a float output dtype, one of {FLOAT_DTYPES}"
        )
    if bands is not None:
        norm.check_bands(len(bands), f"bands {tuple(bands)}")


def output_dtype_name(dtype: object) -> str:
    """The canonical name of an accepted `dtype` ("bfloat16", or numpy's name)."""
    return "bfloat16" if _is_bf16(dtype) else np.dtype(dtype).name


@dataclass(frozen=True)
class StreamConfig:
    sampler: str = "random"
    patch_size: int = 256
    batch_size: int = 32
    length: int = 1024  # windows per epoch (grid: all windows; unused when windows are given)
    seed: int = 0
    workers: int = 0  # DataLoader processes; 0 = threads in this process
    threads: int = 0  # decode threads per process; 0 = cores / processes
    # batches assembled ahead, per process: 4 kept the decode threads busy between batches
    # (2 -> 4: +10-18% on every compressed variant, +100-200 MB RSS)
    prefetch: int = 4
    # batches whose tiles are planned ahead of the one being made (the cache's eviction
    # plan); bounded, so the first batch and the plan's memory do not grow with the epoch
    plan_ahead: int = 64
    bands: tuple[int, ...] | None = None  # 0-based band indices; None = all
    # output dtype, e.g. "float32", "bfloat16"; None = source dtype (float32 if normalize)
    dtype: str | None = None
    # per selected band `x * scale + offset`, in the copy to the batch (not to masks);
    # a mapping {"mean", "std"} or {"scale", "offset"} is taken too (config files)
    normalize: Normalization | None = None
    cache_mb: float = 128.0  # decoded-tile cache per process
    # windows per decoded tile (see samplers); 0 = auto: 1 for local files, and for remote
    # ones enough that the link carries fewer bytes than the patches (samplers.link_reuse)
    patches_per_tile: int = 0
    shuffle_tiles: int = 16  # tile visits mixed together when reusing tiles
    drop_last: bool = False
    pin_memory: bool | None = None  # None = when CUDA is available
    # image batches in channels-last memory (shape still (N, C, H, W), strides of NHWC, as
    # `torch.channels_last`; convolutions take it as is): a pixel-interleaved tile's
    # pieces are copied row by row instead of transposed band by band
    channels_last: bool = False
    start_method: str | None = None  # DataLoader multiprocessing context, e.g. "spawn"
    merge_gap: int = 0  # bytes: merge reads of tiles this close together
    direct: bool = True  # uncompressed local files: copy patches from the page cache
    io_threads: int = -1  # requests in flight per process for remote sources; -1 = auto
    on_error: str = "raise"  # "skip": leave out a sample whose tiles cannot be read, count it
    # a header index file (cog.header_index): parsed headers kept across runs, keyed by file
    # and version, so a second run over many files parses (and fetches) no header
    header_index: str | None = None

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
        object.__setattr__(self, "normalize", Normalization.coerce(self.normalize))
        if self.normalize is not None:
            _check_normalize(self.normalize, self.dtype, self.bands)
        if self.header_index is not None and not isinstance(self.header_index, str):
            raise InputError(f"header_index {self.header_index!r}", "a file path, or None")
        if self.on_error not in ("raise", "skip"):
            raise InputError(f"on_error '{self.on_error}'", "choose 'raise' or 'skip'")
        if self.pin_memory is not None and not isinstance(self.pin_memory, bool):
            raise InputError(f"pin_memory {self.pin_memory!r}", "must be None, True or False")
        if not isinstance(self.channels_last, bool):
            raise InputError(f"channels_last {self.channels_last!r}", "must be True or False")
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
        visits fit 128 MB; 32 moved 3x the bytes). Resolving twice changes nothing.
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

    def output_dtype(self, source: np.dtype) -> str:
        """The batch's dtype name for images of dtype `source`."""
        if self.dtype is not None:
            return output_dtype_name(self.dtype)
        return "float32" if self.normalize is not None else np.dtype(source).name

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

