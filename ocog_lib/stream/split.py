"""`SpatialSplit`: which rows of each raster train and which are held out.

The bottom `val_fraction` of each raster's rows, rounded to whole patches, is held out;
training windows lie wholly above it and held-out patches are the grid sampler's windows
wholly below, so a model is scored on pixels it never saw, on any dataset. Segmentation
training (`train/`) and the patch encoder (`embed/`) share it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ocog_lib.cog.grid import TileGrid
from ocog_lib.errors import InputError
from ocog_lib.stream.samplers import SamplerConfig, sample_windows


@dataclass(frozen=True)
class SpatialSplit:
    """Rows above `split_row` train, rows below are held out, per raster."""

    val_fraction: float
    patch: int

    def split_row(self, g: TileGrid, index: int = 0) -> int:
        p = self.patch
        if g.height < 2 * p or g.width < p:
            raise InputError(f"raster #{index} ({g.height}x{g.width})",
                             f"too small to hold a training and a held-out patch of {p}")
        row = round(g.height * (1 - self.val_fraction) / p) * p
        return min(max(row, p), g.height - p)

    def limits(self, grids: list[TileGrid]) -> np.ndarray:
        return np.array([self.split_row(g, i) for i, g in enumerate(grids)], dtype=np.int64)

    def train_windows(self, grids: list[TileGrid], cfg: SamplerConfig) -> np.ndarray:
        """`cfg.length` windows of the sampler, keeping those wholly above the split."""
        limits = self.limits(grids)
        share = sum(int(lim) * g.width for lim, g in zip(limits, grids, strict=True)) / sum(
            g.height * g.width for g in grids)  # fmt: skip
        draw = math.ceil(cfg.length / max(share, 1e-3) * 1.25) + 8
        for _ in range(8):
            w = sample_windows(grids, replace(cfg, length=draw))
            keep = w[w[:, 1] + self.patch <= limits[w[:, 0]]]
            if len(keep) >= cfg.length:
                return keep[: cfg.length]
            draw *= 2
        raise InputError("training windows", f"the sampler gave {len(keep)} of {cfg.length} "
                         "above the held-out rows; lower val_fraction")  # fmt: skip

    def val_windows(self, grids: list[TileGrid], max_patches: int) -> np.ndarray:
        """The grid sampler's windows wholly below the split; evenly thinned to a cap."""
        limits = self.limits(grids)
        w = sample_windows(grids, SamplerConfig(kind="grid", patch_size=self.patch))
        w = w[w[:, 1] >= limits[w[:, 0]]]
        if len(w) > max_patches:
            w = w[np.unique(np.linspace(0, len(w) - 1, max_patches).round().astype(int))]
        return w
