"""What every peer loader shares inside its driver process: the job's windows and batches,
a bounded ordered worker pool, and GDAL's cache size as GDAL itself reports it.

Runs in any peer's interpreter (its own venv has no ocog), so: stdlib and numpy only.
"""

from __future__ import annotations

import ctypes
import glob
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence

import numpy as np


def windows(job: dict) -> np.ndarray:
    """The job's (file, row, col) windows, int64, in the order ocog reads them."""
    out = np.load(job["windows"])
    if out.ndim != 2 or out.shape[1] != 3:
        raise ValueError(f"{job['windows']}: windows must be (n, 3), got {out.shape}")
    return out.astype(np.int64, copy=False)


def batch_slices(n: int, batch: int) -> list[range]:
    """Index ranges of consecutive batches (the last one may be short)."""
    return [range(s, min(s + batch, n)) for s in range(0, n, batch)]


def ordered_pool(
    tasks: Sequence,
    work: Callable,
    *,
    workers: int,
    inflight: int,
    initializer: Callable | None = None,
    initargs: tuple = (),
) -> Iterator:
    """`work(task)` in `workers` spawned processes, results in task order, at most
    `inflight` tasks queued (a DataLoader's workers x prefetch). Ends with close()+join():
    a pool is never terminated (tests/test_suite_guards.py), so at most `inflight` tasks
    finish after the consumer stops."""
    pool = multiprocessing.get_context("spawn").Pool(workers, initializer, initargs)
    pending: deque = deque()
    try:
        for task in tasks:
            pending.append(pool.apply_async(work, (task,)))
            if len(pending) >= inflight:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
    finally:
        pool.close()
        pool.join()


def gdal_cache_bytes() -> int | None:
    """GDALGetCacheMax64() of the libgdal rasterio loaded: the block cache GDAL applies
    (GDAL_CACHEMAX parsed by GDAL itself), None where that library cannot be found."""
    try:
        import rasterio
    except ImportError:
        return None
    here = os.path.dirname(rasterio.__file__)
    libs = sorted(glob.glob(os.path.join(here, "..", "rasterio.libs", "libgdal*")))
    libs = libs or sorted(glob.glob(os.path.join(here, ".libs", "libgdal*")))
    for lib in libs or ["libgdal.so"]:
        try:
            gdal = ctypes.CDLL(lib)
        except OSError:
            continue
        gdal.GDALGetCacheMax64.restype = ctypes.c_int64
        return int(gdal.GDALGetCacheMax64())
    return None


def gdal_facts() -> dict:
    """The GDAL settings a rasterio-based peer runs under, read back from GDAL."""
    import rasterio

    facts = {"rasterio": rasterio.__version__, "gdal": rasterio.__gdal_version__,
             "gdal_cachemax_bytes_per_process": gdal_cache_bytes()}  # fmt: skip
    try:
        from rasterio._env import get_gdal_config

        facts["gdal_num_threads"] = get_gdal_config("GDAL_NUM_THREADS", normalize=False)
    except ImportError:
        facts["gdal_num_threads"] = os.environ.get("GDAL_NUM_THREADS")
    return facts


def stack(parts: list[np.ndarray]) -> np.ndarray:
    """One batch array from per-sample arrays of one shape."""
    out = np.empty((len(parts), *parts[0].shape), dtype=parts[0].dtype)
    for i, p in enumerate(parts):
        out[i] = p
    return out


class LoaderBatches:
    """A torch DataLoader's batches, and close(): its workers shut down when measuring ends
    (not left to the garbage collector while the next run starts)."""

    def __init__(self, loader):
        self.loader = loader
        self._it = None

    def __iter__(self):
        self._it = iter(self.loader)
        return self._it

    def close(self) -> None:
        it, self._it = self._it, None
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
