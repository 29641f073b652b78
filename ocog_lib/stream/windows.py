"""An epoch's windows without holding them: drawn slice by slice, batched on demand.

A user's epoch over a terabyte archive is 1e7-1e9 windows; drawn whole before the first
batch it cost 0.3-1 KB a window and minutes (1e7: 101-105 s, +2.8 to +10.8 GB, measured
by a user on the sample's bench files). Here nothing is kept per window for the epoch:
`EpochWindows` draws slice j of the sampler (`samplers.sample_slice`, seeded by (seed, j))
when a batch needs it and keeps the last slice it made; `Batches` is the epoch cut into
batches as a sequence whose items are made when asked; `WorkerShare` is one DataLoader
worker's batches (whole shuffle groups) by index arithmetic. Given windows (a held-out
set, a next epoch) are an array the caller already holds.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from ocog_lib.cog.grid import TileGrid
from ocog_lib.stream.samplers import (
    SamplerConfig,
    check_sampling,
    sample_slice,
    slice_length,
    window_count,
)


class EpochWindows:
    """The sampler's windows for one epoch, made a slice at a time."""

    def __init__(self, grids: list[TileGrid], cfg: SamplerConfig):
        check_sampling(grids, cfg)
        self.grids, self.cfg = grids, cfg
        self.length = window_count(grids, cfg)
        self._size = slice_length(cfg)
        self._last: tuple[int, np.ndarray] | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self.length

    def _slice(self, j: int) -> np.ndarray:
        with self._lock:
            last = self._last
        if last is not None and last[0] == j:
            return last[1]
        out = sample_slice(self.grids, self.cfg, j)
        with self._lock:
            self._last = (j, out)
        return out

    def take(self, start: int, stop: int) -> np.ndarray:
        """Windows start..stop as an (n, 3) int64 array."""
        start, stop = max(0, start), min(stop, self.length)
        if start >= stop:
            return np.empty((0, 3), dtype=np.int64)
        first, last = start // self._size, (stop - 1) // self._size
        parts = [self._slice(j) for j in range(first, last + 1)]
        joined = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return joined[start - first * self._size : stop - first * self._size]

    def __getstate__(self) -> dict:  # a worker makes its own slices
        return {**self.__dict__, "_last": None, "_lock": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


class GivenWindows:
    """Windows the caller holds (checked by the stream), read like an epoch."""

    def __init__(self, windows: np.ndarray):
        self.array = windows
        self.length = len(windows)

    def __len__(self) -> int:
        return self.length

    def take(self, start: int, stop: int) -> np.ndarray:
        return self.array[max(0, start) : stop]


WindowSource = EpochWindows | GivenWindows


class _Made(Sequence):
    """A sequence whose item i is made when asked (`_make`), sliced and indexed as a list."""

    _n: int

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._make(k) for k in range(*i.indices(self._n))]
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(f"batch {i} of {self._n}")
        return self._make(i)

    def _make(self, i: int):
        raise NotImplementedError


class Batches(_Made):
    """An epoch's windows cut into batches; batch i is made when asked."""

    def __init__(self, windows: WindowSource, batch_size: int, drop_last: bool = False):
        self.windows, self.batch_size = windows, batch_size
        n = len(windows)
        self._n = n // batch_size if drop_last else -(-n // batch_size)

    def _make(self, i: int) -> np.ndarray:
        b = self.batch_size
        return self.windows.take(i * b, (i + 1) * b)


class WorkerShare(_Made):
    """Worker `worker` of `workers`'s batches of `batches`: groups of `group` consecutive
    batches dealt round-robin (tile reuse stays inside a worker)."""

    def __init__(self, batches: Sequence, worker: int, workers: int, group: int):
        self.batches, self.worker, self.workers, self.group = batches, worker, workers, group
        full, rest = divmod(len(batches), group * workers)
        tail = min(group, max(0, rest - worker * group))  # its part of the last round
        self._n = full * group + tail

    def _make(self, k: int):
        rnd, offset = divmod(k, self.group)
        return self.batches[(rnd * self.workers + self.worker) * self.group + offset]
