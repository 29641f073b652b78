"""What a window sequence costs on the wire: the compressed tiles it has to fetch.

A tile is compressed as a unit, so a window pays for every tile it touches whole. This
is the ceiling a layout and sampler put on any loader, before any cache: plain windows
each fetch their own tiles; with tile reuse, a shuffle group's windows share theirs.
"""

from __future__ import annotations

import numpy as np

from ocog_lib.stream.rasters import RasterSource


def tile_bytes_per_sample(
    windows: np.ndarray, rasters: list[RasterSource], patch: int, group: int = 1
) -> float | None:
    """Mean compressed bytes of the distinct tiles each group of `group` windows touches."""
    if len(windows) == 0 or any(r.index is None for r in rasters):
        return None
    total = 0
    for start in range(0, len(windows), max(1, group)):
        tiles: set[tuple[int, int, int]] = set()
        for f, row, col in windows[start : start + group].tolist():
            touched = rasters[f].grid.window_tiles(row, col, patch, patch)
            tiles.update((f, ty, tx) for ty, tx in touched)
        for f, ty, tx in tiles:
            index = rasters[f].index
            planes = index.bands if index.planar == 2 else 1
            total += sum(index.tile_entry(0, b, ty, tx)[1] for b in range(planes))
    return total / len(windows)
