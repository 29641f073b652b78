"""Sampler geometry: windows inside rasters, block semantics, grid coverage, reuse."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocog_lib.cog.grid import TileGrid
from ocog_lib.errors import InputError
from ocog_lib.stream.samplers import (
    SamplerConfig,
    batch_mix,
    link_reuse,
    sample_windows,
    tiles_per_visit,
)

GRIDS = [TileGrid(1000, 1300, 256, 256), TileGrid(700, 520, 128, 128)]


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(["random", "block", "grid"]),
    patch=st.integers(1, 520),
    reuse=st.integers(1, 5),
    seed=st.integers(0, 1000),
)
def test_windows_lie_inside_their_raster(kind, patch, reuse, seed):
    w = sample_windows(GRIDS, SamplerConfig(kind, patch, 200, seed, patches_per_tile=reuse))
    for f, g in enumerate(GRIDS):
        sel = w[w[:, 0] == f]
        assert (sel[:, 1] >= 0).all() and (sel[:, 1] + patch <= g.height).all()
        assert (sel[:, 2] >= 0).all() and (sel[:, 2] + patch <= g.width).all()


@settings(max_examples=40, deadline=None)
@given(patch=st.integers(1, 256), reuse=st.integers(1, 4), seed=st.integers(0, 1000))
def test_block_windows_stay_inside_one_tile(patch, reuse, seed):
    grid = [TileGrid(1024, 1024, 256, 256)]  # whole tiles only: no edge tile
    w = sample_windows(grid, SamplerConfig("block", patch, 300, seed, patches_per_tile=reuse))
    assert (w[:, 1] // 256 == (w[:, 1] + patch - 1) // 256).all()
    assert (w[:, 2] // 256 == (w[:, 2] + patch - 1) // 256).all()


def test_block_windows_larger_than_a_block_are_grid_aligned():
    w = sample_windows([TileGrid(2048, 2048, 256, 256)], SamplerConfig("block", 600, 500, 1))
    assert (w[:, 1] % 256 == 0).all() and (w[:, 2] % 256 == 0).all()


def test_grid_covers_every_pixel_once_or_more():
    g = TileGrid(700, 520, 128, 128)
    w = sample_windows([g], SamplerConfig("grid", 200))
    covered = np.zeros((g.height, g.width), bool)
    for _, r, c in w:
        covered[r : r + 200, c : c + 200] = True
    assert covered.all()
    assert len(w) == 4 * 3


def test_random_is_uniform_enough_and_seeded():
    cfg = SamplerConfig("random", 64, 4000, seed=3)
    a, b = sample_windows(GRIDS, cfg), sample_windows(GRIDS, cfg)
    np.testing.assert_array_equal(a, b)
    # rasters weighted by area: the first raster holds ~78% of the valid positions
    share = (a[:, 0] == 0).mean()
    assert 0.72 < share < 0.84
    assert a[a[:, 0] == 0][:, 2].max() > 1100  # reaches the far edge


def test_reuse_draws_several_windows_per_tile_and_mix_reports_it():
    g = [TileGrid(4096, 4096, 512, 512)]
    plain = sample_windows(g, SamplerConfig("block", 256, 640, 0))
    reuse = sample_windows(
        g, SamplerConfig("block", 256, 640, 0, patches_per_tile=8, shuffle_tiles=4)
    )
    tiles = reuse[:, 1] // 512 * 8 + reuse[:, 2] // 512
    assert len(np.unique(tiles)) <= 640 // 8 + 1
    assert batch_mix(reuse, g, 32) < batch_mix(plain, g, 32)


def test_bad_configs_are_named():
    with pytest.raises(InputError, match="sampler 'spiral'"):
        SamplerConfig("spiral")
    with pytest.raises(InputError, match="smaller than the patch"):
        sample_windows([TileGrid(100, 100, 64, 64)], SamplerConfig("random", 128))


@pytest.mark.parametrize(
    ("kind", "patch", "tile", "expected"),
    [
        ("block", 256, 512, 8),  # one 512 tile = 4 patches of area, x2 margin
        ("random", 256, 512, 32),  # anchor + 3 neighbours = 16 patches, x2 -> capped 32
        ("random", 256, 256, 8),  # 4 tiles of patch size, x2
        ("block", 256, 256, 2),
        ("block", 512, 256, 2),  # aligned to the grid: 4 tiles = the patch itself
        ("grid", 256, 512, 1),
    ],
)
def test_link_reuse_puts_under_half_a_patch_per_sample_on_the_wire(kind, patch, tile, expected):
    k = link_reuse(kind, patch, tile, tile)
    assert k == expected
    fetched = (tiles_per_visit(kind, patch, tile) * tile) ** 2
    if kind != "grid" and k < 32:
        assert fetched / (patch * patch) / k <= 0.5


@pytest.mark.parametrize("kind", ["random", "block"])
@pytest.mark.parametrize("anchor", [128, 256, 512, 96])
@pytest.mark.parametrize("tile", [128, 256, 512, 96])
@pytest.mark.parametrize("patch", [1, 100, 128, 300, 600])
def test_tiles_per_visit_counts_another_grid_exactly(kind, anchor, tile, patch):
    """The most `tile`-px tiles the windows of one visit anchored in an `anchor`-px tile
    touch (a mask tiled unlike its image), worked out pixel by pixel."""
    worst = 0
    for a in range(0, 4 * anchor * tile, anchor):  # every alignment of the two grids
        if kind == "block":
            lo, hi = (a, a + anchor) if patch <= anchor else (a, a + patch)
        else:
            lo, hi = a, a + anchor - 1 + patch
        worst = max(worst, (hi - 1) // tile - lo // tile + 1)
    assert tiles_per_visit(kind, patch, tile, anchor=anchor) == worst
