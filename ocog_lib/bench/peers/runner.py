"""One peer measured in a process of its own: the job file, the driver, its JSON line.

Each call of a `DriverRun` is one measurement as `PlannedRun.measure` wants it: a fresh
driver process with the peer's python (cold caches, new workers), the windows and settings
in a job file, GDAL's settings in its environment, and back one JSON line that becomes a
`Measurement` (or an `InputError` naming the peer and what it said).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ocog_lib.bench.measure import Measurement
from ocog_lib.bench.peers.catalog import PeerSpec
from ocog_lib.bench.peers.venv import clean_env
from ocog_lib.errors import InputError

DRIVER = Path(__file__).with_name("driver.py")
START_ALLOWANCE_S = 900  # imports, workers, rasteret's first index build


@dataclass(frozen=True)
class DriverRun:
    """A peer's loader over given windows, measured once per call."""

    spec: PeerSpec
    python: Path
    images: tuple[str, ...]
    masks: tuple[str, ...]
    windows: np.ndarray = field(repr=False, compare=False)
    patch_size: int
    batch_size: int
    seconds: float
    warmup_seconds: float
    workers: int
    cache_mb: float
    seed: int
    work_dir: Path  # the peer's own files (rasteret's index), kept between runs

    def job(self, **over) -> dict:
        return {"module": self.spec.module, "images": list(self.images),
                "masks": list(self.masks), "patch_size": self.patch_size,
                "batch_size": self.batch_size, "seconds": self.seconds,
                "warmup_seconds": self.warmup_seconds, "workers": self.workers,
                "cache_mb": self.cache_mb, "seed": self.seed,
                "work_dir": str(self.work_dir), **over}  # fmt: skip

    def run(self, **over) -> dict:
        """The driver's answer {"measurement", "facts"}; `over`: job fields to change."""
        with tempfile.TemporaryDirectory(prefix="ocog-peer-") as tmp:
            np.save(Path(tmp) / "windows.npy", self.windows)
            job = self.job(windows=str(Path(tmp) / "windows.npy"), **over)
            (Path(tmp) / "job.json").write_text(json.dumps(job))
            timeout = job["seconds"] + job["warmup_seconds"] + START_ALLOWANCE_S
            env = clean_env(self.spec.env(self.cache_mb, self.workers))
            cmd = [str(self.python), str(DRIVER), str(Path(tmp) / "job.json")]
            return _answer(self.spec.name, cmd, env, timeout)

    def check(self) -> dict:
        """Two batches end to end: the peer's facts, or InputError where it cannot run."""
        return self.run(seconds=0, warmup_seconds=0, max_batches=1)["facts"]

    def __call__(self) -> Measurement:
        return Measurement(**self.run()["measurement"])


def _last_json(out: str) -> dict | None:
    for line in reversed(out.strip().splitlines()):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _answer(name: str, cmd: list[str], env: dict, timeout: float) -> dict:
    """The driver's JSON answer; its error line, or what it left on stderr, as InputError."""
    what = f"peer {name}"
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout,
                              check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise InputError(what, f"its driver gave no answer in {timeout:g} s") from None
    except OSError as exc:
        raise InputError(what, f"its driver did not start ({exc})") from None
    answer = _last_json(done.stdout)
    if answer is not None and "error" in answer:
        raise InputError(what, answer["error"])
    if done.returncode != 0 or answer is None:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise InputError(what, f"its driver exited {done.returncode} without an answer: {tail}")
    return answer


def files_key(paths: list[str]) -> str:
    """A key that changes when any file is replaced: path, size and mtime of each."""
    h = hashlib.sha1()
    for p in paths:
        st = os.stat(p)
        h.update(f"{os.path.abspath(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]
