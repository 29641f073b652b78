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


SLICE = 8192  # windows drawn at a time: an epoch is never held whole (stream.windows)


def slice_length(cfg: SamplerConfig) -> int:
    """Windows per slice: SLICE rounded up to whole shuffle groups of tile visits."""
    group = cfg.patches_per_tile * cfg.shuffle_tiles if cfg.patches_per_tile > 1 else 1
    return -(-SLICE // group) * group


def window_count(grids: list[TileGrid], cfg: SamplerConfig) -> int:
    """Windows in an epoch: `length`, or every grid position for `grid`."""
    if cfg.kind != "grid":
        return cfg.length
    return int(sum(len(_grid_axis(g.height, cfg.patch_size)) * len(_grid_axis(g.width,
               cfg.patch_size)) for g in grids))  # fmt: skip


def check_sampling(grids: list[TileGrid], cfg: SamplerConfig) -> None:
    """Refuse what no window can be drawn from: no rasters, or one smaller than a patch."""
    if not grids:
        raise InputError("sampler", "no rasters to sample from")
    _check_fits(grids, cfg.patch_size)


def sample_slice(grids: list[TileGrid], cfg: SamplerConfig, j: int) -> np.ndarray:
    """Slice `j` of the epoch's windows, an (n, 3) int64 array of (file, row, col).

    Each slice draws from its own generator, seeded by (seed, j): any slice can be made
    on its own, in any process, and the epoch is the same for a seed whatever reads it."""
    n = window_count(grids, cfg)
    size = slice_length(cfg)
    start, stop = j * size, min((j + 1) * size, n)
    if start >= stop:
        return np.empty((0, 3), dtype=np.int64)
    if cfg.kind == "grid":
        return _grid_slice(grids, cfg.patch_size, start, stop)
    rng = np.random.default_rng((cfg.seed, j))
    if cfg.kind == "random" and cfg.patches_per_tile == 1:
        return _plain_random(rng, grids, cfg.patch_size, stop - start)
    return _tile_visits(rng, grids, cfg, stop - start)


def sample_windows(grids: list[TileGrid], cfg: SamplerConfig) -> np.ndarray:
    """The whole epoch's windows as an (N, 3) int64 array of (file, row, col): the slices
    joined (small epochs; the engine reads slices as it goes)."""
    check_sampling(grids, cfg)
    n, size = window_count(grids, cfg), slice_length(cfg)
    parts = [sample_slice(grids, cfg, j) for j in range(-(-n // size))]
    return np.concatenate(parts) if parts else np.empty((0, 3), dtype=np.int64)


def _plain_random(rng, grids: list[TileGrid], p: int, n: int) -> np.ndarray:
    """Top-left corners uniform over each raster, rasters weighted by area."""
    areas = np.array([(g.height - p + 1) * (g.width - p + 1) for g in grids], dtype=float)
    files = rng.choice(len(grids), size=n, p=areas / areas.sum())
    out = np.empty((n, 3), dtype=np.int64)
    out[:, 0] = files
    for f, g in enumerate(grids):
        sel = files == f
        k = int(sel.sum())
        out[sel, 1] = rng.integers(0, g.height - p + 1, size=k)
        out[sel, 2] = rng.integers(0, g.width - p + 1, size=k)
    return out


def _tile_visits(rng, grids: list[TileGrid], cfg: SamplerConfig, n: int) -> np.ndarray:
    """A tile drawn uniformly over all tiles of all rasters, k windows each, shuffled
    across `shuffle_tiles` consecutive visits."""
    k, p = cfg.patches_per_tile, cfg.patch_size
    visits = -(-n // k)
    counts = np.array([g.tile_count for g in grids], dtype=float)
    files = rng.choice(len(grids), size=visits, p=counts / counts.sum())
    rows = np.empty(visits * k, dtype=np.int64)
    cols = np.empty(visits * k, dtype=np.int64)
    block = cfg.kind == "block"
    rep_files = np.repeat(files, k)
    for f, g in enumerate(grids):
        sel = files == f
        m = int(sel.sum())
        ty = np.repeat(rng.integers(0, g.tiles_down, size=m), k)
        tx = np.repeat(rng.integers(0, g.tiles_across, size=m), k)
        rsel = rep_files == f
        rows[rsel] = _axis_in_tile(rng, ty, g.tile_height, g.height, p, block)
        cols[rsel] = _axis_in_tile(rng, tx, g.tile_width, g.width, p, block)
    out = np.stack([rep_files, rows, cols], axis=1)
    if k > 1:
        group = cfg.shuffle_tiles * k
        for start in range(0, len(out), group):
            rng.shuffle(out[start : start + group])
    return out[:n]


def _grid_axis(extent: int, p: int) -> np.ndarray:
    """Grid offsets along one axis: stride p, the last one flush with the edge."""
    return np.unique(np.minimum(np.arange(0, extent, p), extent - p))


def _grid_slice(grids: list[TileGrid], p: int, start: int, stop: int) -> np.ndarray:
    """Grid windows start..stop (raster order), worked out from their index alone."""
    axes = [(_grid_axis(g.height, p), _grid_axis(g.width, p)) for g in grids]
    ends = np.cumsum([len(ys) * len(xs) for ys, xs in axes])
    idx = np.arange(start, stop, dtype=np.int64)
    files = np.searchsorted(ends, idx, side="right")
    out = np.empty((len(idx), 3), dtype=np.int64)
    out[:, 0] = files
    for f in np.unique(files).tolist():
        sel = files == f
        ys, xs = axes[f]
        local = idx[sel] - (ends[f - 1] if f else 0)
        r, c = np.divmod(local, len(xs))
        out[sel, 1], out[sel, 2] = ys[r], xs[c]
    return out


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
