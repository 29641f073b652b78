"""The tile cache: least recently used out first, bounded by bytes, counted."""

from __future__ import annotations

from ocog_lib.serve.cache import CachedTile, TileCache


def _tile(n: int) -> CachedTile:
    return CachedTile(b"x" * n, "application/octet-stream", (("X-Scenes", "1"),))


def test_evicts_the_least_recently_used_within_the_byte_budget():
    cache = TileCache(250)
    for key in "abc":
        cache.put(key, _tile(100))  # c pushes a out: 300 > 250
    assert cache.get("a") is None and cache.get("b") is not None
    cache.put("d", _tile(100))  # b was used last: c goes
    assert cache.get("c") is None and cache.get("b") is not None and cache.get("d") is not None
    stats = cache.stats()
    assert (stats.entries, stats.bytes, stats.max_bytes) == (2, 200, 250)
    assert (stats.hits, stats.misses) == (3, 2)


def test_an_entry_larger_than_the_budget_is_not_kept_and_replacing_counts_once():
    cache = TileCache(100)
    cache.put("big", _tile(101))
    assert cache.get("big") is None and cache.stats().bytes == 0
    cache.put("a", _tile(60))
    cache.put("a", _tile(70))
    assert cache.stats().bytes == 70 and cache.get("a").body == b"x" * 70
    assert TileCache(0).stats().max_bytes == 0
