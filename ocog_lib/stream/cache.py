"""A bounded decoded-tile cache shared by the engine's threads.

Bounded by bytes (the same memory budget every loader in a comparison gets), least
recently used out first. Tiles being decoded are tracked as futures, so two batches
that need the same tile wait for one decode instead of doing two.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from concurrent.futures import Future

import numpy as np


class TileCache:
    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._tiles: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._pending: dict[Hashable, Future] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def lookup(self, key: Hashable) -> np.ndarray | Future | None:
        """The tile, its in-flight future, or None (then the caller must `claim` it)."""
        with self._lock:
            tile = self._tiles.get(key)
            if tile is not None:
                self._tiles.move_to_end(key)
                self.hits += 1
                return tile
            fut = self._pending.get(key)
            if fut is not None:
                self.hits += 1
                return fut
            return None

    def claim(self, keys: list[Hashable], fut: Future) -> list[Hashable]:
        """Mark the keys nobody holds or decodes yet as decoded by `fut`; returns them."""
        with self._lock:
            fresh = [k for k in keys if k not in self._tiles and k not in self._pending]
            for k in fresh:
                self._pending[k] = fut
            self.misses += len(fresh)
            return fresh

    def put(self, key: Hashable, tile: np.ndarray) -> None:
        with self._lock:
            self._pending.pop(key, None)
            if key in self._tiles or tile.nbytes > self.max_bytes:
                return
            self._tiles[key] = tile
            self._bytes += tile.nbytes
            while self._bytes > self.max_bytes and self._tiles:
                _, old = self._tiles.popitem(last=False)
                self._bytes -= old.nbytes

    def forget_pending(self, keys: list[Hashable]) -> None:
        """Drop in-flight markers after a failed decode so a later batch may retry."""
        with self._lock:
            for k in keys:
                self._pending.pop(k, None)
