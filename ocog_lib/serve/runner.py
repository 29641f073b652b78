"""`ComputeRunner`: computations off the event loop, a bounded number at once, each key once.

A burst of requests for one tile (a map opening: every client asks for the same view)
starts one computation; the others await its result. A client that goes away does not
cancel the computation the others wait on. At most `max_queued` computations wait for a
slot; one more is refused at once (503, retry later) rather than queued without bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from ocog_lib.serve.errors import ApiError


class ComputeRunner:
    def __init__(self, executor: Executor, max_concurrent: int, max_queued: int = 1024):
        self._executor = executor
        self._max = max_concurrent
        self._max_queued = max_queued
        self._waiting = 0
        self._slots: asyncio.Semaphore | None = None  # made on the loop that uses it
        self._inflight: dict[str, asyncio.Task] = {}

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` in the pool, waiting for one of the `max_concurrent` slots first."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max)
        if self._slots.locked() and self._waiting >= self._max_queued:
            raise ApiError("server", f"busy: {self._max} computations running and "
                           f"{self._waiting} waiting (max_queued); retry later", status=503,
                           error="busy")  # fmt: skip
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self._slots.release()

    async def once(self, key: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Like `run`, but a key already being computed is awaited, not computed again."""
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self.run(fn, *args))
            self._inflight[key] = task
            task.add_done_callback(lambda t: self._done(key, t))
        return await asyncio.shield(task)

    def inflight(self) -> int:
        return len(self._inflight)

    def waiting(self) -> int:
        return self._waiting

    def _done(self, key: str, task: asyncio.Task) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved: no "never retrieved" warning when all waiters left
