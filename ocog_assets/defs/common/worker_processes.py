"""DataLoader workers started from a clean process inside a Dagster step.

A Dagster step process runs gRPC and other C++ threads; a worker *forked* from it
inherits their state and aborts at exit ("terminate called without an active
exception", seen in `make demo` on 2026-12-03 in stream_benchmarks). Inside an asset
the workers are therefore started by a forkserver that preloads torch and rasterio:
each worker forks from a single-threaded server, not from the step.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager

_PRELOAD = ["torch", "rasterio"]


@contextmanager
def clean_worker_start() -> Iterator[None]:
    """Make forkserver the default start method for the block; restore it after."""
    previous = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_forkserver_preload(_PRELOAD)
    multiprocessing.set_start_method("forkserver", force=True)
    try:
        yield
    finally:
        multiprocessing.set_start_method(previous, force=True)
