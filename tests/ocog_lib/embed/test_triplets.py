"""Triplet windows: positives near their anchor, negatives far or in another file, all of
them above the held-out rows; the same epoch for the same seed."""

import dataclasses

import numpy as np
import pytest

from ocog_lib.cog.grid import TileGrid
from ocog_lib.embed.config import EmbedConfig
from ocog_lib.embed.triplets import epoch_triplets, negatives, positives
from ocog_lib.errors import InputError
from ocog_lib.stream.split import SpatialSplit

GRIDS = [TileGrid(512, 512, 256, 256), TileGrid(300, 400, 256, 256)]
CFG = EmbedConfig(patch_size=32, neighbour_px=16, distant_px=96, batch_size=8,
                  batches_per_epoch=6, val_fraction=0.25)  # fmt: skip


def test_split_rows_and_held_out_windows():
    split = SpatialSplit(0.25, 64)
    assert split.limits(GRIDS).tolist() == [384, 236]
    val = split.val_windows(GRIDS, 1000)
    assert all(r >= [384, 236][f] for f, r, _ in val)
    assert len(val[val[:, 0] == 0]) == 2 * 8
    assert len(split.val_windows(GRIDS, 5)) == 5
    with pytest.raises(InputError, match="too small"):
        split.split_row(TileGrid(100, 512, 512, 512))


def test_epoch_layout_and_distances():
    w = epoch_triplets(GRIDS, CFG, epoch=0)
    b, p = CFG.batch_size, CFG.patch_size
    assert w.shape == (CFG.batches_per_epoch * 3 * b, 3)
    limits = SpatialSplit(0.25, p).limits(GRIDS)
    heights, widths = limits[w[:, 0]], np.array([g.width for g in GRIDS])[w[:, 0]]
    assert ((w[:, 1] >= 0) & (w[:, 1] + p <= heights)).all()  # never in the held-out rows
    assert ((w[:, 2] >= 0) & (w[:, 2] + p <= widths)).all()
    t = w.reshape(-1, 3, b, 3)  # batch, role (anchor, positive, negative), triplet, window
    a, pos, neg = t[:, 0].reshape(-1, 3), t[:, 1].reshape(-1, 3), t[:, 2].reshape(-1, 3)
    assert (a[:, 0] == pos[:, 0]).all()
    shift = np.abs(pos[:, 1:] - a[:, 1:])
    assert (shift.max(1) <= CFG.neighbour_px).all() and (shift.max(1) > 0).all()
    assert (shift.max(1) >= CFG.neighbour_px // 2).mean() > 0.95  # no near copies (edges clamp)
    far = (neg[:, 0] != a[:, 0]) | (np.hypot(*(neg[:, 1:] - a[:, 1:]).T) > CFG.distant_px)
    assert far.all()
    np.testing.assert_array_equal(w, epoch_triplets(GRIDS, CFG, epoch=0))
    assert not np.array_equal(w, epoch_triplets(GRIDS, CFG, epoch=1))
    other = dataclasses.replace(CFG, seed=1)
    assert not np.array_equal(w, epoch_triplets(GRIDS, other, epoch=0))


def test_positives_stay_inside_and_negatives_can_be_impossible():
    rng = np.random.default_rng(0)
    grids = [TileGrid(128, 128, 128, 128)]
    limits = np.array([96])
    anchors = np.array([[0, 0, 0], [0, 64, 96], [0, 10, 50]])
    for _ in range(20):
        pos = positives(anchors, grids, limits, 32, 16, rng)
        assert ((pos[:, 1] >= 0) & (pos[:, 1] <= 64) & (pos[:, 2] >= 0) & (pos[:, 2] <= 96)).all()
        assert (np.abs(pos - anchors).max(1) > 0).all()
    with pytest.raises(InputError, match="distant_px 500"):
        negatives(anchors, grids, limits, 32, 500, rng, tries=4)
