"""Measure one peer loader in this process: `python driver.py JOB.json`, one JSON line out.

Run by `bench.peers.runner` with the peer's own interpreter (the project's venv for tuned
rasterio, a venv of its own for the others), so it imports nothing of ocog at module level
and finds its peer module (`peer_<name>.py`) beside itself; the peer's heavy imports
(its `IMPORTS`) are timed apart (`import_s`). The timing is `bench.measure`'s:
making the loader (`open_s`) apart, time to the first batch (`startup_s`), `warmup_seconds`
consumed uncounted, then samples/s over `seconds`. Peak memory is summed over this process
and its children (the peer's workers) from before the loader is made: with
`ocog_lib.memory.PeakMemory` where this interpreter can import it, else from /proc.
Success prints {"measurement": {...}, "facts": {...}}; any failure one {"error": "..."} line
and exit status 1.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
import time
import traceback

MB = 1e6


class ProcPeak:
    """Peak RSS (and PSS, every second) of this process tree, polled every 50 ms from
    /proc: the stand-in for ocog_lib.memory.PeakMemory in a venv without ocog or psutil."""

    name = "/proc"

    def __init__(self, interval: float = 0.05):
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peak_rss_bytes = 0
        self.peak_pss_bytes: int | None = 0

    def __enter__(self) -> ProcPeak:
        self.poll(pss=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.poll(pss=True)

    @property
    def peak_rss_mb(self) -> float:
        return self.peak_rss_bytes / MB

    @property
    def peak_pss_mb(self) -> float | None:
        return None if self.peak_pss_bytes is None else self.peak_pss_bytes / MB

    def _run(self) -> None:
        last_pss = time.monotonic()
        while not self._stop.wait(self._interval):
            due = time.monotonic() - last_pss >= 1.0
            self.poll(pss=due)
            last_pss = time.monotonic() if due else last_pss

    def poll(self, *, pss: bool) -> None:
        pids = _tree(os.getpid())
        self.peak_rss_bytes = max(self.peak_rss_bytes, sum(_rss(p) for p in pids))
        if pss and self.peak_pss_bytes is not None:
            values = [_pss(p) for p in pids]
            if any(v is None for v in values):
                self.peak_pss_bytes = None  # no mixed peaks: off once unreadable
            else:
                self.peak_pss_bytes = max(self.peak_pss_bytes, sum(values))


def _tree(root: int) -> list[int]:
    """`root` and its descendants, from every /proc/<pid>/stat's parent field."""
    parents: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += parents.get(pid, [])
    return out


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def _pss(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _peak_memory():
    """ocog's own probe where importable (the project venv), else ProcPeak."""
    try:
        from ocog_lib.memory import PeakMemory, trim_heap
    except ImportError:
        return ProcPeak()
    trim_heap()
    probe = PeakMemory()
    probe.name = "ocog_lib.memory"
    return probe


def batch_len(batch) -> int:
    if isinstance(batch, dict):
        return int(batch["image"].shape[0])
    if isinstance(batch, list | tuple):
        return int(batch[0].shape[0])
    return int(batch.shape[0])


def _drain(it, seconds: float) -> int:
    got, end = 0, time.perf_counter() + seconds
    while seconds > 0 and time.perf_counter() < end:
        batch = next(it, None)
        if batch is None:
            break
        got += batch_len(batch)
    return got


def _dump(batch, path: str) -> None:
    """The first batch as .npz (image, and mask where read): what the tests compare."""
    import numpy as np

    if isinstance(batch, dict):
        parts = {k: batch[k] for k in ("image", "mask") if k in batch}
    elif isinstance(batch, list | tuple):
        parts = dict(zip(("image", "mask"), batch, strict=False))
    else:
        parts = {"image": batch}
    np.savez(path, **{k: np.asarray(v) for k, v in parts.items()})


def measure(job: dict) -> dict:
    """The peer's loader measured once, as `bench.measure.measure` measures ocog's."""
    t_import = time.perf_counter()
    peer = importlib.import_module(job["module"])
    for name in getattr(peer, "IMPORTS", ()):
        importlib.import_module(name)
    imported = time.perf_counter() - t_import
    with _peak_memory() as mem:
        t_open = time.perf_counter()
        batches, facts = peer.open_loader(job)
        opened = time.perf_counter() - t_open
        try:
            t0 = time.perf_counter()
            it = iter(batches)
            first = next(it)
            startup = time.perf_counter() - t0
            if job.get("dump_first"):
                _dump(first, job["dump_first"])
            warm = batch_len(first)
            del first
            warm += _drain(it, job["warmup_seconds"])
            n = nb = 0
            t1 = time.perf_counter()
            for batch in it:
                n += batch_len(batch)
                nb += 1
                done = time.perf_counter() - t1 >= job["seconds"]
                if done or (job.get("max_batches") and nb >= job["max_batches"]):
                    break
            elapsed = time.perf_counter() - t1
            facts = {**facts, "threads_seen": len(os.listdir("/proc/self/task"))}
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()
    return {
        "measurement": {"samples_per_s": n / elapsed if elapsed > 0 else 0.0,
                        "startup_s": startup, "samples": n, "seconds": elapsed,
                        "delivered": warm + n, "open_s": opened,
                        "peak_rss_mb": mem.peak_rss_mb, "peak_pss_mb": mem.peak_pss_mb},
        "facts": {**facts, "import_s": round(imported, 3), "memory_probe": mem.name,
                  "python": ".".join(map(str, sys.version_info[:3]))},
    }  # fmt: skip


def main() -> int:
    try:
        with open(sys.argv[1]) as f:
            job = json.load(f)
        out = measure(job)
    except BaseException as exc:  # noqa: BLE001 - every failure becomes the error line
        tail = traceback.format_exc().strip().splitlines()[-6:]
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}", "traceback": tail}))
        sys.stdout.flush()
        return 1
    print(json.dumps(out, default=str))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
