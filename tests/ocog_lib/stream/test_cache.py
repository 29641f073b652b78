"""The tile cache: byte bound, and with a plan, the tile needed furthest ahead goes first."""

from __future__ import annotations

from concurrent.futures import Future

import numpy as np

from ocog_lib.stream.cache import TileCache


def _tile(v: int) -> np.ndarray:
    return np.full(100, v, dtype=np.uint8)  # 100 bytes


def _ask_and_put(cache: TileCache, key: str, position: int | None) -> None:
    if cache.lookup(key, position) is None:
        cache.claim([key], Future(), position)
        cache.put(key, _tile(ord(key)))


def test_without_a_plan_the_least_recently_used_goes():
    cache = TileCache(300)
    for k in "abc":
        _ask_and_put(cache, k, None)
    cache.lookup("a")
    _ask_and_put(cache, "d", None)
    assert cache.lookup("b") is None and cache.lookup("a") is not None
    assert cache.nbytes == 300


def test_with_a_plan_the_tile_needed_furthest_ahead_goes():
    # positions 0..3 ask for a, b, c, d; later a at 9, b at 5, c never again
    cache = TileCache(300)
    cache.set_plan({"a": [0, 9], "b": [1, 5], "c": [2], "d": [3]})
    for pos, k in enumerate("abc"):
        _ask_and_put(cache, k, pos)
    _ask_and_put(cache, "d", 3)  # full: c is needed never again
    assert [cache.lookup(k) is not None for k in "abc"] == [True, True, False]
    cache.set_plan({"a": [0, 9], "b": [1, 5], "d": [3, 4], "e": [4, 6]})
    for pos, k in enumerate("abd"):
        cache.lookup(k, pos)
    _ask_and_put(cache, "e", 4)  # a (9) is further ahead than b (5), d (3) and e (6)
    assert [cache.lookup(k) is not None for k in "abde"] == [False, True, True, True]
    assert cache.nbytes == 300


def test_a_tile_never_needed_again_is_not_kept_in_place_of_one_that_is():
    cache = TileCache(200)
    cache.set_plan({"a": [0, 5], "b": [1, 6], "c": [2]})
    for pos, k in enumerate("abc"):
        _ask_and_put(cache, k, pos)
    assert cache.lookup("c") is None and cache.nbytes == 200
