"""The cache-aware limit (ocog_lib/bench/cache_limit.py): Belady's fewest decodes, checked
against an exhaustive search on small sequences and against the engine's own count."""

from __future__ import annotations

import itertools
from dataclasses import replace
from functools import cache

import numpy as np
import pytest

from ocog_lib.bench.cache_limit import (
    DecodeCount,
    cache_limit_sps,
    count_decodes,
    min_decodes,
    stream_decodes,
)


def _optimal(batches: tuple[frozenset, ...], capacity: int) -> int:
    """The true minimum of decodes for unit-size tiles served a batch at a time: after each
    batch, every choice of at most `capacity` tiles to keep, searched exhaustively."""

    @cache
    def best(i: int, cached: frozenset) -> int:
        if i == len(batches):
            return 0
        need = batches[i]
        pool = sorted(cached | need)
        keeps = [frozenset(c) for n in range(min(capacity, len(pool)) + 1)
                 for c in itertools.combinations(pool, n)]  # fmt: skip
        return len(need - cached) + min(best(i + 1, keep) for keep in keeps)

    return best(0, frozenset())


@pytest.mark.parametrize("seed", range(12))
def test_belady_is_the_true_minimum_for_one_tile_size(seed):
    rng = np.random.default_rng(seed)
    batches = [rng.choice(6, size=rng.integers(1, 4), replace=False).tolist()
               for _ in range(9)]  # fmt: skip
    exact = tuple(frozenset(b) for b in batches)
    for capacity in (1, 2, 3):
        refs, fewest = min_decodes(batches, 10, capacity * 10)
        assert (refs, fewest) == (sum(map(len, batches)), _optimal(exact, capacity))


def test_tiles_repeat_inside_a_batch_once_and_sizes_bound_the_cache():
    assert min_decodes([["a", "a", "b"], ["a"]], 1, 0) == (3, 3)  # no cache: every ref
    assert min_decodes([["a", "b"], ["a", "b"]], 1, 2) == (4, 2)  # both kept
    # a tile larger than the budget is never kept; the small one is
    assert min_decodes([["big", "s"], ["big", "s"]], {"big": 5, "s": 1}, 4) == (4, 3)


def test_counts_sum_over_processes_and_the_limit_is_the_rate_over_decodes():
    count = count_decodes([([["a"], ["a"]], 2), ([["a"]], 1)], 1, 1)
    assert count == DecodeCount(refs=3, min_decodes=2, samples=3)
    assert cache_limit_sps(600.0, count) == pytest.approx(600.0 / (2 / 3))
    assert cache_limit_sps(600.0, DecodeCount(3, 0, 3)) is None


@pytest.mark.parametrize("reuse, prefetch", [(1, 1), (4, 1), (4, 4), (1, 4)])
def test_the_engine_never_decodes_fewer_than_the_limit(tmp_path, reuse, prefetch):
    from ocog_lib.stream.config import StreamConfig
    from ocog_lib.stream.dataset import CogStream
    from tests.support.rasters import real_pixels, write_raster

    path = tmp_path / "a.tif"
    write_raster(path, real_pixels(3, 512, 512, "uint16"), BLOCKSIZE=128, COMPRESS="DEFLATE")
    cfg = StreamConfig(patch_size=96, batch_size=4, length=96, patches_per_tile=reuse,
                       cache_mb=0.25, threads=2, prefetch=prefetch)  # fmt: skip
    stream = CogStream([str(path)], None, cfg)
    decoded = sum(int(b["stats"][1]) for b in stream.loader())
    fewest = stream_decodes(stream, in_flight=prefetch)  # tiles in flight are free too
    assert fewest.samples == 96 and fewest.refs == stream.stats.tile_refs
    assert 0 < fewest.min_decodes <= decoded
    assert stream_decodes(stream).min_decodes >= fewest.min_decodes  # the budget alone
    # with room for every tile, each distinct tile is decoded exactly once
    roomy = CogStream([str(path)], None, replace(cfg, cache_mb=64))
    distinct = {k for c in roomy.batch_windows() for k in roomy.tile_keys(c)}
    assert stream_decodes(roomy).min_decodes == len(distinct)


def test_exhaustive_reference_agrees_on_lrus_worst_loop():
    loop = [[k] for k in [0, 1, 2, 3] * 3]  # LRU misses every time with room for 3
    assert _optimal(tuple(frozenset(b) for b in loop), 3) == min_decodes(loop, 1, 3)[1] < 12


def test_tiles_held_by_batches_in_flight_need_no_decode():
    batches = [["a"], ["b"], ["a"]]
    assert min_decodes(batches, 1, 0) == (3, 3)
    assert min_decodes(batches, 1, 0, in_flight=2) == (3, 3)  # "a" left two batches back
    assert min_decodes(batches, 1, 0, in_flight=3) == (3, 2)


def test_a_use_served_by_a_batch_in_flight_does_not_need_the_cache():
    # "a" every other batch: with 3 in flight it is always held (one decode), so the one
    # cache slot is left to "b" (0 -> 3) and "c" (1 -> 5), which overlap: one of them twice
    batches = [["a", "b"], ["c"], ["a"], ["b"], ["a"], ["c", "b"]]
    assert min_decodes(batches, 1, 1, in_flight=3) == (8, 4)
    alone = _optimal(tuple(frozenset(b) for b in batches), 1)
    assert min_decodes(batches, 1, 1) == (8, alone) and alone > 4
