"""Celery worker processes for Dagster's Celery executor (dagster-celery), started by PID.

Why: one machine's multiprocess executor stops at its own cores; with the Celery executor a
run hands each step to whichever worker is free, on this machine or another one that
reaches the same broker and Dagster instance (the step before Kubernetes). A worker here
is `celery -A dagster_celery.app worker` with one slot (`--pool=solo`: the step runs in
the worker process itself, one at a time) and a node name of its own (`ocog-w1@<host>`),
which Dagster's run log shows on each step ("Executing steps ... in celery worker").

dagster-celery's app reads its broker from a module named `dagster_celery_config` on the
worker's PYTHONPATH (what `dagster-celery worker start` writes); we write the same module.
Nothing Dagster is imported here: the workers are plain child processes.

`python -m ocog_lib.remote.celery_workers run --data-dir data --workers 2 -- CMD...` starts
Redis and the workers, runs CMD with OCOG_EXECUTOR=celery and the broker URLs set (the code
location then runs every job on Celery), and stops them all when CMD ends (`make workers`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from ocog_lib.errors import InputError
from ocog_lib.remote.child import run_command
from ocog_lib.remote.redis import EmbeddedRedis, stop_process_group

EXECUTOR_ENV = "OCOG_EXECUTOR"  # "celery": ocog's jobs run on the Celery executor
BROKER_ENV = "OCOG_CELERY_BROKER"  # the broker URL (redis://127.0.0.1:<port>/0)
BACKEND_ENV = "OCOG_CELERY_BACKEND"  # the result backend URL (redis://.../1)
QUEUE = "dagster"  # dagster-celery's default queue
CONFIG_MODULE = "dagster_celery_config"
READY = " ready."  # celery's log line once the worker consumes


@dataclass(frozen=True)
class WorkerConfig:
    """What every worker shares: the broker, the result backend, where logs go."""

    broker_url: str
    backend_url: str
    root: Path  # the config module and one log per worker
    queue: str = QUEUE
    loglevel: str = "INFO"


def write_config_module(config: WorkerConfig) -> Path:
    """`<root>/config/dagster_celery_config.py`, the settings dagster_celery.app loads."""
    folder = config.root / "config"
    folder.mkdir(parents=True, exist_ok=True)
    text = (
        '"""Written by ocog_lib.remote.celery_workers: the workers\' broker."""\n'
        f"broker_url = {config.broker_url!r}\n"
        f"result_backend = {config.backend_url!r}\n"
        "worker_prefetch_multiplier = 1  # one step reserved at a time: the free worker takes it\n"
        "task_acks_late = True\n"
    )
    (folder / f"{CONFIG_MODULE}.py").write_text(text, encoding="utf-8")
    return folder


def worker_command(name: str, config: WorkerConfig) -> list[str]:
    """The worker: dagster-celery's app, one slot, node name `<name>@<host>`."""
    return [sys.executable, "-m", "celery", "-A", "dagster_celery.app", "worker",
            "--pool=solo", "--concurrency=1", "--prefetch-multiplier=1", "-Q", config.queue,
            "-n", f"{name}@%h", "--loglevel", config.loglevel, "--without-gossip",
            "--without-mingle", "--without-heartbeat"]  # fmt: skip


class CeleryWorker:
    """One worker process, its output in `<root>/<name>.log`, stopped by PID."""

    def __init__(self, name: str, config: WorkerConfig, env: dict[str, str]):
        self.name = name
        self.config = config
        self.env = env
        self.log_path = config.root / f"{name}.log"
        self._proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def spawn(self) -> None:
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                worker_command(self.name, self.config), env=self.env, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip

    def ready(self) -> bool:
        """True once the worker consumes; an error with its log when it exited instead."""
        if self._proc is None:
            raise InputError(f"celery worker {self.name}", "not started")
        if self._proc.poll() is not None:
            raise InputError(f"celery worker {self.name}", f"exited at start "
                             f"(rc {self._proc.returncode}): {self.log_tail()}")  # fmt: skip
        return READY in self.log_path.read_text(errors="replace")

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM (warm shutdown) by PID; SIGKILL of its process group if it lingers."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process_group(proc, grace_s)

    def log_tail(self, n: int = 1500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:].strip()
        except OSError:
            return ""


class CeleryWorkers:
    """N workers on one broker for as long as the object (or `with`) lives."""

    def __init__(self, config: WorkerConfig, count: int = 2, *, env: dict[str, str] | None = None,
                 prefix: str = "ocog-w", startup_timeout_s: float = 120.0):  # fmt: skip
        if count < 1:
            raise InputError(f"workers {count}", "at least one worker is needed")
        self.config = config
        self.startup_timeout_s = startup_timeout_s
        base = dict(os.environ if env is None else env)
        path = os.pathsep.join(p for p in (str(write_config_module(config)),
                                           base.get("PYTHONPATH", "")) if p)  # fmt: skip
        worker_env = {**base, "PYTHONPATH": path, **celery_env(config)}
        self.workers = [CeleryWorker(f"{prefix}{i + 1}", config, worker_env)
                        for i in range(count)]  # fmt: skip

    @property
    def names(self) -> list[str]:
        return [w.name for w in self.workers]

    @property
    def pids(self) -> list[int | None]:
        return [w.pid for w in self.workers]

    def start(self) -> Self:
        """Spawn all, then wait until every one consumes (any failure stops them all)."""
        return self.spawn().wait_ready()

    def spawn(self) -> Self:
        """Start the processes without waiting (prepare something else meanwhile)."""
        try:
            for w in self.workers:
                if w.pid is None:
                    w.spawn()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self) -> Self:
        """Until every spawned worker consumes; on a failure or timeout all are stopped."""
        try:
            deadline = time.monotonic() + self.startup_timeout_s
            while not all(w.ready() for w in self.workers):
                if time.monotonic() > deadline:
                    late = [w.name for w in self.workers if not w.ready()]
                    raise InputError(f"celery workers {late}", f"not ready after "
                                     f"{self.startup_timeout_s:g} s: "
                                     f"{self.workers[0].log_tail()}")  # fmt: skip
                time.sleep(0.2)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for w in self.workers:
            w.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def celery_env(config: WorkerConfig) -> dict[str, str]:
    """What the code location reads to run jobs on these workers' broker."""
    return {EXECUTOR_ENV: "celery", BROKER_ENV: config.broker_url,
            BACKEND_ENV: config.backend_url}  # fmt: skip


# ------------------------------------------------------------------ `make workers`


def run_with_workers(args: argparse.Namespace) -> int:
    """Start Redis and the workers, run the command against them, stop all whatever happens."""
    root = Path(args.data_dir) / "celery"
    root.mkdir(parents=True, exist_ok=True)
    with EmbeddedRedis.for_data_dir(args.data_dir, port=args.port) as redis:
        config = WorkerConfig(redis.url_for(0), redis.url_for(1), root.absolute())
        with CeleryWorkers(config, args.workers) as workers:
            print(f"redis pid {redis.pid} at {redis.url}; celery workers "
                  f"{dict(zip(workers.names, workers.pids, strict=True))}; "
                  f"logs in {root}", flush=True)  # fmt: skip
            if not args.cmd:
                return 0
            return run_command(args.cmd, {**os.environ, **celery_env(config)})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ocog_lib.remote.celery_workers",
                                description="Redis and Celery workers around a command.")
    sub = p.add_subparsers(dest="cmd_name", required=True)
    r = sub.add_parser("run", help="start Redis + workers, run CMD on them, stop them")
    r.add_argument("--data-dir", default=os.environ.get("OCOG_DATA_DIR", "data"))
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--port", type=int, default=0, help="Redis port; 0 = a free port")
    r.add_argument("cmd", nargs=argparse.REMAINDER, help="-- the command (none: just check)")
    args = p.parse_args(argv)
    args.cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    try:
        return run_with_workers(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

