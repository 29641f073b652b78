"""Which windows the encoder learns from: anchors, their neighbours, distant patches.

The split is spatial, per raster (`ocog_lib.stream.split.SpatialSplit`, training's too):
the bottom `val_fraction` of each raster's rows, rounded to whole patches, is held out;
every training window (anchor, positive and negative) lies wholly above it, and quality is
measured on the grid sampler's windows wholly below, so the encoder never saw a held-out
pixel.

A triplet (as VectorGeo's): the anchor is a window of the engine's random sampler; the
positive is the anchor shifted by half of `neighbour_px` to all of it (overlapping by at
most half when `neighbour_px` is a patch, adjacent at most), because nearby ground tends
to be the same kind of ground; the
negative is a random window in another file or whose centre is farther than `distant_px`.
An epoch's windows go to the engine in batches of 3B rows: B anchors, B positives, B
negatives, so a batch of the stream is a batch of triplets.
"""

from __future__ import annotations

import numpy as np

from ocog_lib.cog.grid import TileGrid
from ocog_lib.embed.config import EmbedConfig
from ocog_lib.errors import InputError
from ocog_lib.stream.samplers import SamplerConfig
from ocog_lib.stream.split import SpatialSplit


def positives(anchors: np.ndarray, grids: list[TileGrid], limits: np.ndarray, p: int,
              shift: int, rng: np.random.Generator) -> np.ndarray:
    """Each anchor shifted by `shift`/2 to `shift` px along one axis (and by up to `shift`
    along the other), kept in the training rows: a shift that would leave them is
    mirrored, then clamped. Never a near copy: a positive that shares almost every pixel
    with its anchor is told apart by pixel detail, not by what the ground is."""
    n = len(anchors)
    major = rng.integers(-(-shift // 2), shift + 1, size=n) * rng.choice([-1, 1], size=n)
    minor = rng.integers(-shift, shift + 1, size=n)
    swap = rng.random(n) < 0.5
    off = np.stack([np.where(swap, minor, major), np.where(swap, major, minor)], axis=1)
    hi = np.stack([limits[anchors[:, 0]] - p,
                   np.array([g.width for g in grids])[anchors[:, 0]] - p], axis=1)  # fmt: skip
    pos = anchors[:, 1:] + off
    out = (pos < 0) | (pos > hi)
    pos = np.where(out, anchors[:, 1:] - off, pos)
    pos = np.clip(pos, 0, hi)
    return np.concatenate([anchors[:, :1], pos], axis=1)


def negatives(anchors: np.ndarray, grids: list[TileGrid], limits: np.ndarray, p: int,
              distant: int, rng: np.random.Generator, tries: int = 64) -> np.ndarray:
    """A training window per anchor in another file or with its centre (equally, its
    top-left) more than `distant` px away."""
    heights = limits - p + 1
    widths = np.array([g.width for g in grids]) - p + 1
    weights = heights * widths / (heights * widths).sum()
    out = np.empty_like(anchors)
    todo = np.arange(len(anchors))
    for _ in range(tries):
        f = rng.choice(len(grids), size=len(todo), p=weights)
        r = (rng.random(len(todo)) * heights[f]).astype(np.int64)
        c = (rng.random(len(todo)) * widths[f]).astype(np.int64)
        a = anchors[todo]
        near = (f == a[:, 0]) & (np.hypot(r - a[:, 1], c - a[:, 2]) <= distant)
        out[todo[~near]] = np.stack([f, r, c], axis=1)[~near]
        todo = todo[near]
        if not len(todo):
            return out
    raise InputError(f"distant_px {distant}", f"no training window that far from "
                     f"{len(todo)} anchor(s); lower it or add files")  # fmt: skip


def epoch_triplets(grids: list[TileGrid], cfg: EmbedConfig, epoch: int) -> np.ndarray:
    """One epoch's windows, (batches_per_epoch * 3B, 3): per batch B anchors, then their
    B positives, then B negatives. Deterministic in (seed, epoch)."""
    split = SpatialSplit(cfg.val_fraction, cfg.patch_size)
    limits = split.limits(grids)
    seed = cfg.seed * 1_000_003 + epoch
    b, p = cfg.batch_size, cfg.patch_size
    sc = SamplerConfig("random", p, cfg.batches_per_epoch * b, seed)
    anchors = split.train_windows(grids, sc)
    rng = np.random.default_rng(seed + 17)
    pos = positives(anchors, grids, limits, p, cfg.neighbour_px, rng)
    neg = negatives(anchors, grids, limits, p, cfg.distant_px, rng)
    per_batch = np.stack([anchors, pos, neg]).reshape(3, -1, b, 3)  # (role, batch, B, 3)
    return per_batch.transpose(1, 0, 2, 3).reshape(-1, 3)
