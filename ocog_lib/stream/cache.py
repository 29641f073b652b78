"""A bounded decoded-tile cache shared by the engine's threads.

Bounded by bytes (the same memory budget every loader in a comparison gets). Tiles being
decoded are tracked as futures, so two batches that need the same tile wait for one
decode instead of doing two.

What goes out when full: the engine plans the tiles of the batches `plan_ahead` ahead of
the one being made (`plan_batch`, `retire`), so it knows which batch needs which tile
next. Given that plan, the cache evicts the tile needed furthest ahead, or not within the
look-ahead (Belady's rule), picked among a random sample of cached tiles so an eviction
costs the same for 60 tiles or 6,000. A batch
holds the tiles it was handed, so evicting one it still copies from is safe. Without a
plan: least recently used out first.
"""

from __future__ import annotations

import bisect
import random
import threading
from collections import OrderedDict
from collections.abc import Hashable
from concurrent.futures import Future

import numpy as np

NEVER = 1 << 62
EVICTION_SAMPLE = 32  # cached tiles compared per eviction


class TileCache:
    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._tiles: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._pending: dict[Hashable, Future] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        # the plan: key -> sorted positions (batch numbers) that need it; None = LRU
        self._uses: dict[Hashable, list[int]] | None = None
        self._seen: dict[Hashable, int] = {}  # latest position that asked for a key
        self._keys: list[Hashable] = []  # cached keys, for sampling (swap-remove)
        self._slot: dict[Hashable, int] = {}
        self._rng = random.Random(0)

    def set_plan(self, uses: dict[Hashable, list[int]] | None) -> None:
        """Which positions need which tiles, for the batches about to be made."""
        with self._lock:
            self._uses = uses
            self._seen = {}

    def plan_batch(self, position: int, keys) -> None:
        """Add a batch about to be made to the plan (positions come in increasing order)."""
        with self._lock:
            if self._uses is None:
                self._uses = {}
            for k in keys:
                self._uses.setdefault(k, []).append(position)

    def retire(self, position: int, keys) -> None:
        """A batch is made: its uses leave the plan, which so holds only the look-ahead."""
        with self._lock:
            if self._uses is None:
                return
            for k in keys:
                uses = self._uses.get(k)
                if uses and uses[0] == position:
                    uses.pop(0)
                if not uses:
                    self._uses.pop(k, None)
                    self._seen.pop(k, None)

    def _asked(self, key: Hashable, position: int | None) -> None:
        if position is not None and self._uses is not None:
            if position > self._seen.get(key, -1):
                self._seen[key] = position

    def _next_use(self, key: Hashable) -> int:
        uses = self._uses.get(key) if self._uses is not None else None
        if not uses:
            return NEVER
        i = bisect.bisect_right(uses, self._seen.get(key, -1))
        return uses[i] if i < len(uses) else NEVER

    @property
    def nbytes(self) -> int:
        return self._bytes

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def lookup(self, key: Hashable, position: int | None = None) -> np.ndarray | Future | None:
        """The tile, its in-flight future, or None (then the caller must `claim` it)."""
        with self._lock:
            self._asked(key, position)
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

    def claim(
        self, keys: list[Hashable], fut: Future, position: int | None = None
    ) -> list[Hashable]:
        """Mark the keys nobody holds or decodes yet as decoded by `fut`; returns them."""
        with self._lock:
            for k in keys:
                self._asked(k, position)
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
            self._slot[key] = len(self._keys)
            self._keys.append(key)
            self._bytes += tile.nbytes
            while self._bytes > self.max_bytes and self._tiles:
                self._evict(self._victim())

    def _victim(self) -> Hashable:
        if self._uses is None:
            return next(iter(self._tiles))  # least recently used
        n = len(self._keys)
        picks = range(n) if n <= EVICTION_SAMPLE else self._rng.sample(range(n), EVICTION_SAMPLE)
        return max((self._keys[i] for i in picks), key=self._next_use)

    def _evict(self, key: Hashable) -> None:
        old = self._tiles.pop(key)
        self._bytes -= old.nbytes
        i = self._slot.pop(key)
        last = self._keys.pop()
        if last != key:
            self._keys[i] = last
            self._slot[last] = i

    def forget_pending(self, keys: list[Hashable], fut: Future | None = None) -> None:
        """Drop in-flight markers after a failed decode so a later batch may retry; with
        `fut`, only the markers it holds (a key may have been claimed again since)."""
        with self._lock:
            for k in keys:
                if fut is None or self._pending.get(k) is fut:
                    self._pending.pop(k, None)
