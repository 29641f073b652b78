"""Dagster's own servers as child processes we own: `dagster dev` (webserver, daemon and one
shared code server) for `ocog demo`, or `dagster-webserver` alone for a UI over an instance.

Why here: runs submitted to the instance's queue only run when a daemon dequeues them, and
they carry the code location's origin (what the UI's job pages filter on) only when a
server that loaded the workspace creates them. Plain processes, no dagster import: each
listens on 127.0.0.1 on a free port, is ready once its GraphQL endpoint has loaded the
code location, and is stopped by PID (SIGINT to its process group, then SIGKILL of the
group and of every child it started).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import psutil
import requests

from ocog_lib.errors import InputError

LOCATIONS_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries {
    name locationOrLoadError { __typename ... on PythonError { message }
      ... on RepositoryLocation { repositories { name } } } } } } }
"""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def dagster_program(name: str) -> str:
    """`dagster` / `dagster-webserver` beside this interpreter (the venv), else from PATH."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else name


@dataclass(frozen=True)
class ServiceSpec:
    """What to run: `dev` (webserver + daemon + code server) or `webserver` (the UI only)."""

    workspace: Path
    kind: str = "dev"
    host: str = "127.0.0.1"
    startup_timeout_s: float = 180.0

    def argv(self, port: int) -> list[str]:
        where = ["-w", str(self.workspace), "-h", self.host, "-p", str(port)]
        if self.kind == "dev":  # SIGINT must reach dagster dev's own handler (see stop)
            return ["env", "--default-signal=INT,TERM", dagster_program("dagster"), "dev",
                    *where]  # fmt: skip
        if self.kind == "webserver":
            return [dagster_program("dagster-webserver"), *where]
        raise InputError("ServiceSpec.kind", f"{self.kind!r}: use 'dev' or 'webserver'")


class DagsterService:
    """One Dagster server tree for as long as the object (or `with`) lives; its output goes
    to `log` (read back in errors)."""

    def __init__(self, spec: ServiceSpec, log: Path, env: dict[str, str] | None = None):
        self.spec, self.log, self.env = spec, log, env
        self.port: int | None = None
        self._proc: subprocess.Popen | None = None
        self._seen: set[int] = set()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def started_pids(self) -> frozenset[int]:
        """Every process of the tree seen so far (what `stop` ends, each by its id)."""
        return frozenset(self._seen)

    @property
    def url(self) -> str:
        if self.port is None:
            raise InputError("DagsterService", "not started: call start() first")
        return f"http://{self.spec.host}:{self.port}"

    def start(self, location: str) -> Self:
        """Spawn, then wait until `location` has loaded (a load error raises with its text)."""
        if self._proc is not None:
            return self
        self.port = free_port(self.spec.host)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as out:
            self._proc = subprocess.Popen(
                self.spec.argv(self.port), cwd=self.spec.workspace.parent, env=self.env,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        self._seen.add(self._proc.pid)
        try:
            self._wait_loaded(location)
        except BaseException:
            self.stop()
            raise
        return self

    def graphql(self, query: str, **variables) -> dict:
        reply = requests.post(f"{self.url}/graphql", timeout=30,
                              json={"query": query, "variables": variables})  # fmt: skip
        reply.raise_for_status()
        return reply.json()

    def _wait_loaded(self, location: str) -> None:
        deadline = time.monotonic() + self.spec.startup_timeout_s
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise InputError(f"dagster {self.spec.kind}",
                                 f"exited at start ({self._proc.returncode}): {self.tail()}")
            self.remember_children()
            # not up yet; a load error (InputError, a ValueError) must pass
            with contextlib.suppress(requests.RequestException):
                if self._location_loaded(location):
                    return
            time.sleep(0.5)
        raise InputError(f"dagster {self.spec.kind}", f"code location {location!r} not loaded "
                         f"after {self.spec.startup_timeout_s:g} s: {self.tail()}")

    def _location_loaded(self, location: str) -> bool:
        entries = (self.graphql(LOCATIONS_QUERY).get("data") or {}).get("workspaceOrError", {})
        entry = next((e for e in entries.get("locationEntries") or []
                      if e["name"] == location), None)  # fmt: skip
        loaded = entry and entry["locationOrLoadError"]
        if loaded and loaded["__typename"] == "PythonError":
            raise InputError(location, f"failed to load: {loaded['message']}")
        return bool(loaded and loaded["__typename"] == "RepositoryLocation")

    def exited(self) -> str | None:
        """None while the tree's leader runs; else why it is gone (exit code, log tail)."""
        if self._proc is None:
            return f"dagster {self.spec.kind} is not running"
        if self._proc.poll() is None:
            return None
        return f"dagster {self.spec.kind} exited ({self._proc.returncode}): {self.tail()}"

    def tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-chars:].strip()
        return ""

    def remember_children(self) -> None:
        """Note every process the tree has started (code servers may leave its group)."""
        with contextlib.suppress(psutil.Error):
            if self._proc is not None:
                self._seen |= {c.pid for c in psutil.Process(self._proc.pid).children(True)}

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGINT to the group (a clean shutdown), SIGKILL to what lingers, each by PID."""
        proc = self._proc
        if proc is None:
            return
        self.remember_children()
        self._proc, self.port = None, None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace_s)
        _kill_each(self._seen - {proc.pid}, grace_s)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _kill_each(pids: set[int], grace_s: float) -> None:
    """SIGKILL each process still alive (not a zombie), by its own id; wait for them."""
    alive = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(pid)
            if p.status() != psutil.STATUS_ZOMBIE:
                p.kill()
                alive.append(p)
    psutil.wait_procs(alive, timeout=grace_s)
