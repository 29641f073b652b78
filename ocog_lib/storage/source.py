"""What every reader is: a picklable `ByteSource` of one object, with per-process counters.

A source opens its handle lazily in the process that reads, so no file descriptor or
connection ever crosses a fork (DataLoader workers, spawn or fork).
"""

from __future__ import annotations

import os
import threading
import weakref
from dataclasses import dataclass

from ocog_lib.storage.ranges import ByteRange, merge_ranges


@dataclass(frozen=True)
class TransferStats:
    """What one source cost in this process: benchmarks report bytes on the wire per sample.

    `bytes` counts body bytes received, discarded ones of failed attempts included;
    HTTP headers are not counted. Counters are per process (a source unpickled in a
    DataLoader worker starts at zero there).
    """

    requests: int = 0
    bytes: int = 0
    retries: int = 0
    failures: int = 0


class TransferCounters:
    """Thread-safe counters behind `ByteSource.stats()`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(("requests", "bytes", "retries", "failures"), 0)

    def add(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                self._values[name] += delta

    def snapshot(self) -> TransferStats:
        with self._lock:
            return TransferStats(**self._values)


class ByteSource:
    """Reads byte ranges of one object. Subclasses must stay picklable."""

    uri: str  # safe to print: never holds a secret

    def size(self) -> int:
        raise NotImplementedError

    def read(self, offset: int, length: int) -> bytes:
        raise NotImplementedError

    def head(self, length: int) -> tuple[bytes, int]:
        """(the first `length` bytes, or all of a smaller object; the object's size)."""
        size = self.size()
        return self.read(0, min(length, size)), size

    def version(self) -> str | None:
        """What names this object's content (a remote object's ETag), None where unknown:
        caches key on it, so a rewritten object is never served from a stale entry."""
        return None

    def read_ranges(self, ranges: list[ByteRange], *, max_gap: int = 0) -> list[bytes]:
        """Read many ranges with as few requests as merging allows."""
        out: list[bytes] = [b""] * len(ranges)
        for merged, members in merge_ranges(ranges, max_gap=max_gap):
            blob = memoryview(self.read(merged.offset, merged.length))
            for i in members:
                r = ranges[i]
                out[i] = blob[r.offset - merged.offset : r.end - merged.offset]
        return out

    def stats(self) -> TransferStats:
        counters = getattr(self, "_counters", None)
        return counters.snapshot() if counters is not None else TransferStats()

    def _init_process_state(self) -> None:
        """Fresh locks and zeroed counters: on creation, unpickling and in a forked child."""
        self._lock = threading.Lock()
        self._counters = TransferCounters()


# Every live source, so a forked child can give each fresh locks and zeroed counters: a
# lock another thread held at fork time would stay held forever in the child.
_LIVE_SOURCES: weakref.WeakSet = weakref.WeakSet()


def track_source(source: ByteSource) -> None:
    """Give `source` fresh process state now and again in every forked child."""
    source._init_process_state()
    _LIVE_SOURCES.add(source)


def _after_fork_in_child() -> None:
    for source in list(_LIVE_SOURCES):
        source._init_process_state()


os.register_at_fork(after_in_child=_after_fork_in_child)
