"""The only writer of os.environ in ocog: every change is scoped to a block and undone after.

Library calls that need an environment variable (GDAL_CACHEMAX for loader workers that read
it at start-up, AWS_* for GDAL's /vsis3/ and boto3) set it here for the duration of the call,
so nothing leaks into the next call of the same process (`ocog demo` runs many jobs in one).
A child process gets its environment through `env=` of subprocess, not through os.environ.

Not thread-safe, and cannot be: os.environ is process-wide, so a block's values are seen by
every thread of the process while it runs, and two threads with overlapping blocks restore in
their own order. Use it around calls that own the process (a benchmark, a trial, a command).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


@contextmanager
def scoped_env(
    values: Mapping[str, str | None] | None = None, /, **more: str | None
) -> Iterator[None]:
    """Set `values` and `more` in os.environ inside the block (None: unset inside it).

    On exit, exception or not, each key is exactly as it was: its old value back, or
    removed if it was absent. Nested blocks restore in order."""
    changes = {**(values or {}), **more}
    saved = {k: os.environ.get(k) for k in changes}
    try:
        for k, v in changes.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = str(v)
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def exact_env(environ: Mapping[str, str]) -> Iterator[None]:
    """os.environ is exactly `environ` inside the block (every other key unset), as it
    was after. For a worker process that runs each request under its caller's environment."""
    with scoped_env({**dict.fromkeys(os.environ), **environ}):
        yield


def gdal_cache_of_config(fn: Callable[..., T]) -> Callable[..., T]:
    """Run `fn(cfg, ...)` with GDAL_CACHEMAX set to `cfg.cache_mb`, restored after.

    In MB, as an environment variable: rasterio-based loaders read it in every worker they
    start, so each benchmark gives them the budget the engine gets (rasterio.Env would take
    bytes, and only in this process)."""

    @functools.wraps(fn)
    def run(cfg, *args, **kwargs) -> T:
        with scoped_env(GDAL_CACHEMAX=str(max(1, int(cfg.cache_mb)))):
            return fn(cfg, *args, **kwargs)

    return run
