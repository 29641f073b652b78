"""`TileCache`: encoded tiles by content key, least recently used out first, bounded by bytes.

One per server process, shared by every request: the key is the ETag (it names the
source files' identities and every argument), so a hit is always the right answer.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class CachedTile:
    body: bytes
    media_type: str
    headers: tuple[tuple[str, str], ...]  # the computation's X-* headers, replayed on a hit


@dataclass(frozen=True)
class CacheStats:
    entries: int
    bytes: int
    max_bytes: int
    hits: int
    misses: int


class TileCache:
    """Thread-safe LRU by bytes; an entry larger than the whole budget is never kept."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max(0, int(max_bytes))
        self._lock = threading.Lock()
        self._items: OrderedDict[str, CachedTile] = OrderedDict()
        self._bytes = 0
        self._hits = 0
        self._misses = 0

    def get(self, key: str) -> CachedTile | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self._misses += 1
                return None
            self._items.move_to_end(key)
            self._hits += 1
            return item

    def put(self, key: str, item: CachedTile) -> None:
        size = len(item.body)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= len(old.body)
            if size > self.max_bytes:
                return
            self._items[key] = item
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= len(evicted.body)

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(len(self._items), self._bytes, self.max_bytes, self._hits,
                              self._misses)  # fmt: skip
