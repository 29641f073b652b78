"""Where patches come from: windows over a set of rasters, deterministic for a seed.

Samplers are separate from the dataset (as in torchgeo): they only produce windows,
`(file, row, col)` top-left corners of `patch x patch` patches that lie wholly inside
their raster, from each raster's tile grid (`cog.grid.TileGrid`). The dataset reads
whatever windows it is given.

- `random`: top-left corners uniform over each raster, rasters weighted by area.
- `block`: the OCOG toolkit's tile-aligned sampler. A patch no larger than a block
  stays inside one tile at a random offset; a larger patch is aligned to the tile grid.
- `grid`: full coverage in raster order (stride = patch, last row/column flush with
  the edge), for evaluation.

Tile reuse (`patches_per_tile` > 1): the sampler visits tiles in a seeded random order
and draws that many windows anchored in each visited tile (top-left inside the tile),
then shuffles windows across `shuffle_tiles` consecutive visits so batches stay mixed.
The engine decodes a tile once and serves every window of the visit from its cache.
With 1 the samplers are the plain ones above.

Why reuse matters over a network: a tile is compressed as a unit, so a 256-px window
costs whole 512-px tiles on the wire (block: 1 tile = 4x its area; random: 2.25 tiles on
average). `link_reuse` gives the windows per visit that bring that back under the
patch's own bytes; the engine uses it for remote sources unless told otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ocog_lib.cog.grid import TileGrid, tile_span
from ocog_lib.errors import InputError

SAMPLERS = ("random", "block", "grid")


@dataclass(frozen=True)
class SamplerConfig:
    kind: str = "random"
    patch_size: int = 256
    length: int = 1024  # number of windows (ignored by grid)
    seed: int = 0
    patches_per_tile: int = 1
    shuffle_tiles: int = 16  # visits mixed together when patches_per_tile > 1

    def __post_init__(self) -> None:
        if self.kind not in SAMPLERS:
            raise InputError(f"sampler '{self.kind}'", f"unknown; choose one of {SAMPLERS}")
        if self.patch_size < 1:
            raise InputError(f"patch_size {self.patch_size}", "must be positive")
        if self.patches_per_tile < 1 or self.shuffle_tiles < 1:
            raise InputError("patches_per_tile/shuffle_tiles", "must be at least 1")


def tiles_per_visit(kind: str, patch: int, tile: int, anchor: int | None = None) -> int:
    """Tiles along one axis that the windows of one visit can cover.

    Visits are anchored in the image's tiles (`anchor` px, default `tile`); the count is in
    tiles of `tile` px, which for a mask tiled unlike its image differ from the anchor's.
    """
    anchor = anchor or tile
    if kind == "block":  # inside the anchor tile, or aligned to it when larger
        span = anchor if patch <= anchor else patch
    else:  # top-left anywhere in the anchor tile
        span = anchor + patch - 1
    # the span starts on the anchor grid: at worst this far into a tile of `tile` px
    slack = tile - math.gcd(anchor, tile)
    return len(tile_span(slack, span, tile))


def link_reuse(kind: str, patch: int, tile_height: int, tile_width: int, cap: int = 32) -> int:
    """Windows per tile visit that put at most half a patch's bytes per sample on the wire.

    A visit fetches whole tiles (see `tiles_per_visit`); k windows share them, so the bytes
    per sample are (tile area fetched / patch area) / k patches. k = 2x that ratio leaves
    the link a margin for cache misses and request overhead.
    """
    if kind == "grid":
        return 1
    fetched = tiles_per_visit(kind, patch, tile_height) * tile_height
    fetched *= tiles_per_visit(kind, patch, tile_width) * tile_width
    return int(min(cap, max(1, -(-2 * fetched // (patch * patch)))))


def _check_fits(grids: list[TileGrid], patch: int) -> None:
    for i, g in enumerate(grids):
        if g.height < patch or g.width < patch:
            raise InputError(
                f"raster #{i} ({g.height}x{g.width})", f"smaller than the patch size {patch}"
            )


def _axis_in_tile(rng, tiles: np.ndarray, tile: int, extent: int, patch: int, block: bool):
    """Offsets along one axis for windows anchored in the given tile indices."""
    start = tiles * tile
    if block and patch > tile:
        # larger than a block: aligned to the tile grid, and inside the raster
        last_aligned = (extent - patch) // tile * tile
        return np.minimum(start, last_aligned)
    if block:
        hi = np.minimum(start + tile, extent) - patch  # stays inside this tile
        # an edge tile smaller than the patch: flush with the raster edge
        hi = np.maximum(hi, 0)
        lo = np.minimum(start, hi)
        return lo + (rng.random(len(tiles)) * (hi - lo + 1)).astype(np.int64)
    # random with reuse: top-left uniform within the tile, clamped into the raster
    lo = np.minimum(start, extent - patch)
    hi = np.minimum(start + tile, extent - patch + 1)
    return lo + (rng.random(len(tiles)) * np.maximum(hi - lo, 1)).astype(np.int64)


def sample_windows(grids: list[TileGrid], cfg: SamplerConfig) -> np.ndarray:
    """Windows as an (N, 3) int64 array of (file, row, col)."""
    if not grids:
        raise InputError("sampler", "no rasters to sample from")
    p = cfg.patch_size
    _check_fits(grids, p)
    if cfg.kind == "grid":
        return _grid_windows(grids, p)

    rng = np.random.default_rng(cfg.seed)
    if cfg.kind == "random" and cfg.patches_per_tile == 1:
        areas = np.array([(g.height - p + 1) * (g.width - p + 1) for g in grids], dtype=float)
        files = rng.choice(len(grids), size=cfg.length, p=areas / areas.sum())
        out = np.empty((cfg.length, 3), dtype=np.int64)
        out[:, 0] = files
        for f, g in enumerate(grids):
            sel = files == f
            n = int(sel.sum())
            out[sel, 1] = rng.integers(0, g.height - p + 1, size=n)
            out[sel, 2] = rng.integers(0, g.width - p + 1, size=n)
        return out

    # tile visits: a tile drawn uniformly over all tiles of all rasters, k windows each
    k = cfg.patches_per_tile
    visits = -(-cfg.length // k)
    counts = np.array([g.tile_count for g in grids], dtype=float)
    files = rng.choice(len(grids), size=visits, p=counts / counts.sum())
    rows = np.empty(visits * k, dtype=np.int64)
    cols = np.empty(visits * k, dtype=np.int64)
    block = cfg.kind == "block"
    rep_files = np.repeat(files, k)
    for f, g in enumerate(grids):
        sel = files == f
        n = int(sel.sum())
        ty = np.repeat(rng.integers(0, g.tiles_down, size=n), k)
        tx = np.repeat(rng.integers(0, g.tiles_across, size=n), k)
        rsel = rep_files == f
        rows[rsel] = _axis_in_tile(rng, ty, g.tile_height, g.height, p, block)
        cols[rsel] = _axis_in_tile(rng, tx, g.tile_width, g.width, p, block)
    out = np.stack([rep_files, rows, cols], axis=1)
    if k > 1:
        group = cfg.shuffle_tiles * k
        for start in range(0, len(out), group):
            rng.shuffle(out[start : start + group])
    return out[: cfg.length]


def _grid_windows(grids: list[TileGrid], p: int) -> np.ndarray:
    parts = []
    for f, g in enumerate(grids):
        ys = np.unique(np.minimum(np.arange(0, g.height, p), g.height - p))
        xs = np.unique(np.minimum(np.arange(0, g.width, p), g.width - p))
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        parts.append(np.stack([np.full(yy.size, f), yy.ravel(), xx.ravel()], axis=1))
    return np.concatenate(parts).astype(np.int64)


def batch_mix(windows: np.ndarray, grids: list[TileGrid], batch_size: int) -> float:
    """How mixed batches are: distinct anchor tiles per batch / batch size (1.0 = all distinct)."""
    if len(windows) == 0:
        return 0.0
    th = np.array([g.tile_height for g in grids])[windows[:, 0]]
    tw = np.array([g.tile_width for g in grids])[windows[:, 0]]
    key = windows[:, 0] * (1 << 40) + (windows[:, 1] // th) * (1 << 20) + windows[:, 2] // tw
    fracs = []
    for s in range(0, len(key), batch_size):
        chunk = key[s : s + batch_size]
        fracs.append(len(np.unique(chunk)) / len(chunk))
    return float(np.mean(fracs))
