"""Peak memory of a loader across all its processes (the parent and every DataLoader worker).

RSS summed over processes counts pages that forked workers share with the parent once per
process, so it overstates; PSS (proportional set size, Linux) splits each shared page among
its sharers and sums to the honest total. Both are recorded where the platform has them.
MB here is 1e6 bytes, as everywhere in ocog's reports.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psutil

MB = 1e6


@dataclass(frozen=True)
class MemorySample:
    rss_bytes: int
    pss_bytes: int | None
    processes: int


# Helper processes that belong to the test bench, not to the loader (an S3 server, a WAN
# shaper): they and their descendants are left out of every sample while registered.
_NOT_MEASURED: set[int] = set()


@contextlib.contextmanager
def not_measured(*pids: int | None) -> Iterator[None]:
    """Leave these processes (e.g. the embedded S3 server) out of loader memory."""
    added = {p for p in pids if p is not None} - _NOT_MEASURED
    _NOT_MEASURED.update(added)
    try:
        yield
    finally:
        _NOT_MEASURED.difference_update(added)


def _excluded(procs: list[psutil.Process]) -> set[int]:
    out = set(_NOT_MEASURED)
    for proc in procs:
        if proc.pid in _NOT_MEASURED:
            try:
                out.update(c.pid for c in proc.children(recursive=True))
            except psutil.NoSuchProcess:
                pass
    return out


def trim_heap() -> None:
    """Hand freed heap back to the OS before a measurement (glibc keeps it otherwise).

    A benchmark runs every loader in one parent process, and the parent counts toward
    each loader's memory: without this, what one row freed but glibc kept was charged to
    the rows after it (up to ~1 GB to the reference and HDF5 rows in one run)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def process_tree(root: psutil.Process) -> list[psutil.Process]:
    """`root` and all its descendants (empty when root has exited)."""
    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def sample_tree(
    root: psutil.Process, *, pss: bool = True, procs: list[psutil.Process] | None = None
) -> MemorySample:
    """Summed memory of `root` and all its descendants right now; vanished processes skipped.

    `procs`: a recent `process_tree(root)`, to skip listing the tree again."""
    procs = process_tree(root) if procs is None else procs
    if not procs:
        return MemorySample(0, None, 0)
    if _NOT_MEASURED:
        skip = _excluded(procs)
        procs = [p for p in procs if p.pid not in skip]
    rss = 0
    pss_total: int | None = 0 if pss else None
    counted = 0
    for proc in procs:
        try:
            if pss_total is not None:
                info = proc.memory_full_info()
                rss += info.rss
                value = getattr(info, "pss", None)
                pss_total = pss_total + value if value is not None else None
            else:
                rss += proc.memory_info().rss
            counted += 1
        except psutil.AccessDenied:
            pss_total = None  # a partial PSS sum would understate; keep RSS going
            try:
                rss += proc.memory_info().rss
                counted += 1
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        except psutil.NoSuchProcess:
            pass  # a worker that exited between listing and reading
    return MemorySample(rss, pss_total, counted)


class PeakMemory:
    """Context manager: a thread polls the process tree and keeps the peaks.

    `with PeakMemory() as pm: ...` then `pm.peak_rss_mb`, `pm.peak_pss_mb` (None where PSS
    is unavailable), `pm.max_processes`. Peaks between polls can be missed; the default
    interval (50 ms) catches anything that lives longer than that.

    RSS is cheap to read (statm); PSS walks every mapping (smaps_rollup) and, polled every
    50 ms, took ~10% of a 2-core machine away from the loader it measured. So the poller
    reads PSS every `pss_interval` seconds and whenever RSS has grown 1% (at least 8 MB)
    past the RSS of the last PSS reading; explicit `poll()` calls (start, end) read both.
    Listing the process tree reads every /proc/*/stat on the machine (3% of a loader's
    profile at 50 ms), so the list is refreshed every `tree_interval` seconds and on
    every full poll; a worker lives for the whole run, far longer than that.
    """

    def __init__(
        self,
        pid: int | None = None,
        *,
        interval: float = 0.05,
        pss: bool = True,
        pss_interval: float = 1.0,
        tree_interval: float = 0.25,
    ):
        self._root = psutil.Process(pid)
        self._interval = interval
        self._pss = pss
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.peak_rss_bytes = 0
        self.peak_pss_bytes: int | None = None
        self.max_processes = 0
        self.samples = 0
        self._pss_ok = pss
        self._pss_interval = pss_interval
        self._pss_due = 0.0  # monotonic time of the next PSS reading
        self._pss_rss = 0  # RSS when PSS was last read
        self._tree_interval = tree_interval
        self._tree: list[psutil.Process] = []
        self._tree_due = 0.0

    @property
    def peak_rss_mb(self) -> float:
        return self.peak_rss_bytes / MB

    @property
    def peak_pss_mb(self) -> float | None:
        return None if self.peak_pss_bytes is None else self.peak_pss_bytes / MB

    def poll(self, *, full: bool = True) -> MemorySample:
        """Take one sample now and fold it into the peaks (full: PSS too, where readable)."""
        now = time.monotonic()
        if full or now >= self._tree_due:
            self._tree = process_tree(self._root)
            self._tree_due = now + self._tree_interval
        s = sample_tree(self._root, pss=self._pss_ok and full, procs=self._tree)
        if not (self._pss_ok and full):
            with self._lock:
                self.samples += 1
                self.peak_rss_bytes = max(self.peak_rss_bytes, s.rss_bytes)
                self.max_processes = max(self.max_processes, s.processes)
            return s
        self._pss_due = time.monotonic() + self._pss_interval
        self._pss_rss = s.rss_bytes
        with self._lock:
            self.samples += 1
            self.peak_rss_bytes = max(self.peak_rss_bytes, s.rss_bytes)
            self.max_processes = max(self.max_processes, s.processes)
            if s.pss_bytes is None:
                # once PSS is unreadable (other OS, permissions) it stays off: no mixed peaks
                self._pss_ok = False
                self.peak_pss_bytes = None
            elif self._pss_ok:
                self.peak_pss_bytes = max(self.peak_pss_bytes or 0, s.pss_bytes)
        return s

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            s = self.poll(full=False)
            if self._pss_ok and (
                time.monotonic() >= self._pss_due
                or s.rss_bytes > self._pss_rss + max(self._pss_rss // 100, 8 << 20)
            ):
                self.poll()

    def __enter__(self) -> PeakMemory:
        self.poll()
        self._thread = threading.Thread(target=self._run, name="peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.poll()
