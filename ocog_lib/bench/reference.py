"""The yardstick: the OCOG toolkit's loading strategy, reproduced so ocog can be compared with it.

The OCOG toolkit is Microsoft's "Optimized COG Streaming"
(github.com/microsoft/pytorch-cloud-geotiff-optimization, arXiv 2506.06235). Read from its
`optimized_cog_streaming/datasets.py`, `datamodules.py` and `configs/configs.yaml`; this
module is our own code for the same behaviour:

- Dataset (`TileDataset` / `SegmentationDataset`): every sample opens the file with
  `rasterio.open` inside `__getitem__`, does a non-boundless windowed read of a square
  patch (all bands; the mask's first band), closes it, and returns `torch.float32` for the
  image (`.float()`) and `torch.int64` for the mask (`.long()`). A window reaching past the
  raster is read clipped and zero-padded at the bottom/right, as its segmentation dataset
  does. No GDAL options are set anywhere.
- Sampler (`RandomBlockSampler`): a file drawn uniformly with replacement per sample;
  files not larger than the patch in both axes are skipped.
  random: top-left offsets uniform in `[0, extent - patch)` (exclusive upper bound, as
  `np.random.randint`, so a window never lies flush against the right/bottom edge).
  block: per axis, a block index uniform in `[0, max(1, (extent - patch) // block))`; a
  patch no larger than the block gets a random offset that keeps it inside that block
  (and the raster); a larger patch starts on the block boundary; finally clamped to
  `extent - patch`. The last block row/column is therefore never drawn; reproduced as is.
- Loader: `torch.utils.data.DataLoader(dataset, sampler=..., batch_size, num_workers,
  prefetch_factor, persistent_workers=True)` with the default collate; `num_threads` is 1
  in all three of its configs, so its in-worker thread pool is not reproduced.
- Configs: default (random, 4 workers, prefetch 2, patch 256), local-optimal (block,
  4 workers, prefetch 2, patch 256), remote-optimal (block, 64 workers, prefetch 8,
  patch 256). Batch size is ours (32, the size of every ocog benchmark).

Deliberate differences, none of which changes how bytes are read: windows are drawn from a
seeded generator (the toolkit uses numpy's global state) so runs repeat; block layout is
read per file rather than taken from the first file; a file too small for the patch is
excluded before drawing rather than skipped after (so an epoch has exactly `length`
samples); a read error raises `InputError` instead of printing and returning zeros.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import rasterio
import torch
from rasterio.windows import Window as RioWindow
from torch.utils.data import DataLoader, Dataset, Sampler

from ocog_lib.errors import InputError

SamplerKind = Literal["random", "block"]
SAMPLER_KINDS: tuple[str, ...] = ("random", "block")

# (file_index, row_off, col_off, height, width)
Window = tuple[int, int, int, int, int]


@dataclass(frozen=True)
class ReferenceConfig:
    """One of the OCOG toolkit's loader configurations."""

    name: str
    sampler: SamplerKind
    patch_size: int = 256
    batch_size: int = 32
    num_workers: int = 4
    prefetch_factor: int = 2
    persistent_workers: bool = True

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLER_KINDS:
            raise InputError(f"sampler '{self.sampler}'", f"unknown; choose one of {SAMPLER_KINDS}")
        for field in ("patch_size", "batch_size", "prefetch_factor"):
            if getattr(self, field) < 1:
                raise InputError(f"{field} {getattr(self, field)}", "must be at least 1")
        if self.num_workers < 0:
            raise InputError(f"num_workers {self.num_workers}", "must not be negative")


REFERENCE_CONFIGS: dict[str, ReferenceConfig] = {
    "default": ReferenceConfig("default", "random", num_workers=4, prefetch_factor=2),
    "local_optimal": ReferenceConfig("local_optimal", "block", num_workers=4, prefetch_factor=2),
    "remote_optimal": ReferenceConfig("remote_optimal", "block", num_workers=64, prefetch_factor=8),
}


@dataclass(frozen=True)
class RasterLayout:
    """Shape facts the samplers need, read once from a file's header."""

    height: int
    width: int
    block_height: int
    block_width: int
    count: int


def read_layouts(paths: Sequence[str]) -> list[RasterLayout]:
    """Read each raster's size and block shape; every handle is closed again before returning,
    so DataLoader workers can be forked afterwards."""
    layouts = []
    for path in paths:
        try:
            with rasterio.open(path) as src:
                block_h, block_w = src.block_shapes[0]
                layouts.append(RasterLayout(src.height, src.width, block_h, block_w, src.count))
        except rasterio.errors.RasterioIOError as exc:
            raise InputError(path, f"cannot open raster ({exc})") from exc
    return layouts


class ReferenceSampler(Sampler[Window]):
    """Windows for the reference loader: a file uniformly per sample, offsets by `kind`.

    Iterating yields one epoch; each new iteration is the next epoch, seeded by
    `(seed, epoch)`, so the same seed gives the same sequence of epochs.
    """

    def __init__(
        self,
        layouts: Sequence[RasterLayout],
        kind: SamplerKind,
        *,
        patch_size: int,
        length: int,
        seed: int,
    ):
        if kind not in SAMPLER_KINDS:
            raise InputError(f"sampler '{kind}'", f"unknown; choose one of {SAMPLER_KINDS}")
        if length < 1:
            raise InputError(f"length {length}", "must be at least 1")
        self.layouts = list(layouts)
        self.kind = kind
        self.patch_size = patch_size
        self.length = length
        self.seed = seed
        # the toolkit skips rasters with width <= patch or height <= patch
        self.eligible = np.array(
            [
                i
                for i, g in enumerate(self.layouts)
                if g.height > patch_size and g.width > patch_size
            ]
        )
        if self.eligible.size == 0:
            raise InputError(
                f"{len(self.layouts)} raster(s)",
                f"none is larger than the patch size {patch_size} in both axes",
            )
        self._epoch = 0

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[Window]:
        windows = self.windows(self._epoch)
        self._epoch += 1
        return iter(windows)

    def windows(self, epoch: int = 0) -> list[Window]:
        """The windows of one epoch, without advancing the iteration counter."""
        rng = np.random.default_rng([self.seed, epoch])
        files = rng.choice(self.eligible, size=self.length, replace=True)
        p = self.patch_size
        out: list[Window] = []
        for i in files.tolist():
            g = self.layouts[i]
            if self.kind == "random":
                row = int(rng.integers(0, g.height - p))
                col = int(rng.integers(0, g.width - p))
            else:
                row = _block_offset(rng, g.height, g.block_height, p)
                col = _block_offset(rng, g.width, g.block_width, p)
            out.append((i, row, col, p, p))
        return out


def _block_offset(rng: np.random.Generator, extent: int, block: int, patch: int) -> int:
    """One axis of the toolkit's block sampler."""
    n_blocks = max(1, (extent - patch) // block)
    start = int(rng.integers(0, n_blocks)) * block
    if patch <= block:
        slack = min(block - patch, extent - start - patch)
        offset = start + int(rng.integers(0, max(1, slack + 1)))
    else:
        offset = min(start, extent - patch)
    return min(offset, extent - patch)


def read_window(path: str, window: Window, bands: Sequence[int] | None = None) -> np.ndarray:
    """Open, read one window (clipped to the raster, zero-padded bottom/right), close.

    Returns `(C, height, width)` in the file's dtype.
    """
    _, row, col, height, width = window
    if row < 0 or col < 0 or height < 1 or width < 1:
        raise InputError(f"window {window} of {path}", "offsets must be >= 0 and sizes >= 1")
    try:
        with rasterio.open(path) as src:
            indexes = list(bands) if bands is not None else list(src.indexes)
            h = max(0, min(height, src.height - row))
            w = max(0, min(width, src.width - col))
            if h == height and w == width:
                return src.read(indexes, window=RioWindow(col, row, width, height))
            out = np.zeros((len(indexes), height, width), dtype=src.dtypes[indexes[0] - 1])
            if h and w:
                out[:, :h, :w] = src.read(indexes, window=RioWindow(col, row, w, h))
            return out
    except (rasterio.errors.RasterioIOError, IndexError) as exc:
        raise InputError(f"{path} window {window}", f"read failed ({exc})") from exc


class ReferenceDataset(Dataset):
    """Map-style dataset indexed by windows: rasterio opened per sample, as the toolkit does.

    Returns the image patch as float32 `(C, H, W)`, or `(image, mask)` with the mask as
    int64 `(1, H, W)` when mask paths are given.
    """

    def __init__(
        self,
        paths: Sequence[str],
        mask_paths: Sequence[str] | None = None,
        bands: Sequence[int] | None = None,
    ):
        if mask_paths is not None and len(mask_paths) != len(paths):
            raise InputError(
                "mask_paths", f"{len(mask_paths)} masks for {len(paths)} images; need one each"
            )
        self.paths = list(paths)
        self.mask_paths = list(mask_paths) if mask_paths is not None else None
        self.bands = list(bands) if bands is not None else None

    def __getitem__(self, window: Window) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        i = window[0]
        image = torch.from_numpy(read_window(self.paths[i], window, self.bands)).float()
        if self.mask_paths is None:
            return image
        mask = read_window(self.mask_paths[i], window, [1])
        return image, torch.from_numpy(mask.astype(np.int64, copy=False))


def make_reference_loader(
    paths: list[str],
    config: ReferenceConfig,
    *,
    length: int,
    seed: int,
    mask_paths: list[str] | None = None,
    bands: list[int] | None = None,
) -> DataLoader:
    """The OCOG toolkit's DataLoader over `paths` with one of its configs.

    Headers are read here in the parent and closed before any worker forks.
    """
    if not paths:
        raise InputError("paths", "no rasters given")
    layouts = read_layouts(paths)
    if bands is not None:
        for i, g in enumerate(layouts):
            bad = [b for b in bands if not 1 <= b <= g.count]
            if bad:
                raise InputError(paths[i], f"has {g.count} band(s); cannot read bands {bad}")
    if mask_paths is not None:
        if len(mask_paths) != len(paths):
            raise InputError(
                "mask_paths", f"{len(mask_paths)} masks for {len(paths)} images; need one each"
            )
        for mask_path, mask, image in zip(
            mask_paths, read_layouts(mask_paths), layouts, strict=True
        ):
            if (mask.height, mask.width) != (image.height, image.width):
                raise InputError(
                    mask_path,
                    f"mask is {mask.height}x{mask.width}, image is {image.height}x{image.width}",
                )
    sampler = ReferenceSampler(
        layouts, config.sampler, patch_size=config.patch_size, length=length, seed=seed
    )
    dataset = ReferenceDataset(paths, mask_paths, bands)
    workers = config.num_workers
    return DataLoader(
        dataset,
        sampler=sampler,
        batch_size=config.batch_size,
        num_workers=workers,
        prefetch_factor=config.prefetch_factor if workers > 0 else None,
        persistent_workers=config.persistent_workers and workers > 0,
    )
