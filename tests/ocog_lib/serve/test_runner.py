"""Computations: a bounded number at once, off the event loop, one per key."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ocog_lib.serve.runner import ComputeRunner


def test_same_key_is_computed_once_and_concurrency_is_bounded():
    calls: list[str] = []
    running, peak, lock = [0], [0], threading.Lock()
    loop_thread = []

    def work(key: str) -> str:
        assert threading.current_thread() is not loop_thread[0]
        with lock:
            calls.append(key)
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return key.upper()

    async def main():
        loop_thread.append(threading.current_thread())
        runner = ComputeRunner(pool, 2)
        same = [runner.once("a", work, "a") for _ in range(10)]
        other = [runner.once(k, work, k) for k in "bcdef"]
        results = await asyncio.gather(*same, *other)
        assert runner.inflight() == 0
        return results

    pool = ThreadPoolExecutor(8)
    try:
        results = asyncio.run(main())
    finally:
        pool.shutdown()
    assert results == ["A"] * 10 + list("BCDEF")
    assert sorted(calls) == list("abcdef")  # "a" once for its 10 waiters
    assert peak[0] == 2  # 8 threads, 2 slots


def test_a_failure_reaches_every_waiter():
    def fail(_key: str) -> None:
        time.sleep(0.01)
        raise ValueError("boom")

    async def main():
        runner = ComputeRunner(pool, 1)
        return await asyncio.gather(*[runner.once("k", fail, "k") for _ in range(3)],
                                    return_exceptions=True)  # fmt: skip

    pool = ThreadPoolExecutor(2)
    try:
        out = asyncio.run(main())
    finally:
        pool.shutdown()
    assert [type(e) for e in out] == [ValueError] * 3


def test_past_max_queued_a_computation_is_refused_with_503_not_queued():
    from ocog_lib.serve.errors import ApiError

    gate = threading.Event()

    async def main():
        runner = ComputeRunner(pool, 1, max_queued=2)
        tasks = [asyncio.ensure_future(runner.once(k, gate.wait, 5)) for k in "abc"]
        await asyncio.sleep(0.05)  # "a" runs, "b" and "c" wait
        assert runner.waiting() == 2
        try:
            await runner.once("d", gate.wait, 5)
        except ApiError as exc:
            refused = exc
        gate.set()
        done = await asyncio.gather(*tasks)
        assert runner.waiting() == 0 and runner.inflight() == 0
        return refused, done

    pool = ThreadPoolExecutor(4)
    try:
        refused, done = asyncio.run(main())
    finally:
        pool.shutdown()
    assert refused.status == 503 and "max_queued" in refused.cause
    assert done == [True, True, True]
