"""PeakMemory sees memory held by child processes, and PSS does not double-count shared pages."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys

import numpy as np
import psutil
import pytest

from ocog_lib.memory import MB, PeakMemory, sample_tree

ALLOC_MB = 200
CHILD = (
    "import sys\n"
    f"block = bytearray(b'\\x01') * {int(ALLOC_MB * MB)}\n"  # written, so resident
    "print('ready', flush=True)\n"
    "sys.stdin.read()\n"
)


def test_peak_includes_a_child_that_allocates():
    before = sample_tree(psutil.Process())
    with PeakMemory(interval=0.02) as pm:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            assert child.stdout.readline().strip() == "ready"
            pm.poll()  # one sample while the child surely holds its block
        finally:
            child.stdin.close()
            child.wait(timeout=30)
    assert pm.max_processes >= 2
    assert pm.peak_rss_mb >= before.rss_bytes / MB + ALLOC_MB * 0.95
    if before.pss_bytes is not None:
        assert pm.peak_pss_mb >= before.pss_bytes / MB + ALLOC_MB * 0.95
    after = sample_tree(psutil.Process())
    assert after.rss_bytes < pm.peak_rss_bytes - ALLOC_MB * 0.9 * MB  # the child's block is gone


def _wait(event) -> None:
    event.wait(30)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PSS and fork are Linux facts")
def test_pss_counts_pages_shared_with_forked_workers_once():
    shared = np.ones(int(ALLOC_MB * MB), dtype=np.uint8)  # resident in the parent before fork
    ctx = multiprocessing.get_context("fork")
    release = ctx.Event()
    workers = [ctx.Process(target=_wait, args=(release,)) for _ in range(2)]
    for w in workers:
        w.start()
    try:
        with PeakMemory() as pm:
            sample = pm.poll()
    finally:
        release.set()
        for w in workers:
            w.join(30)
    assert sample.processes >= 3
    # each worker's RSS includes the inherited block; PSS splits it three ways
    assert pm.peak_rss_mb >= 3 * ALLOC_MB * 0.95
    assert pm.peak_pss_mb is not None
    assert pm.peak_rss_mb - pm.peak_pss_mb >= 2 * ALLOC_MB * 0.9
    assert shared[-1] == 1


def test_poller_reads_pss_on_growth_not_every_tick():
    import time

    child = None
    with PeakMemory(interval=0.01, pss_interval=60.0) as pm:
        start_pss = pm.peak_pss_mb
        time.sleep(0.2)  # many cheap ticks, no growth: no new PSS reading is due
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            assert child.stdout.readline().strip() == "ready"
            time.sleep(0.3)  # RSS grew by the child's block: the poller reads PSS itself
            during = pm.peak_pss_mb
        finally:
            child.stdin.close()
            child.wait(timeout=30)
    assert pm.samples >= 10
    if start_pss is not None:
        assert during >= start_pss + ALLOC_MB * 0.9


def test_trim_heap_leaves_no_freed_memory_charged_to_the_next_loader():
    import psutil

    from ocog_lib.memory import trim_heap

    proc = psutil.Process()
    blocks = [bytes(300_000) + bytes([i % 256]) for i in range(1500)]  # ~450 MB
    allocated = proc.memory_info().rss
    del blocks[::2]
    trim_heap()
    # whichever way glibc held them (heap or mmap), ~225 MB freed are no longer resident
    assert proc.memory_info().rss < allocated - 150e6
    del blocks
