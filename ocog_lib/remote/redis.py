"""A local Redis server: the broker (and result backend) of ocog's Celery workers.

Why: Dagster's Celery executor hands each step to whichever worker is free through a
broker; Redis is the lightest real one. This runs Debian's `redis-server` (`apt-get
install redis-server`, or `make redis`) as a child process we own: listening on 127.0.0.1
only, on a free port (another one when the port is taken first), no persistence (no RDB
snapshot, no AOF: a broker's queue lives as long as its workers), its folder and log
under `<data_dir>/redis/` or a temporary folder, stopped by PID (SIGTERM, then SIGKILL of
its process group). No password exists (loopback only), so none can leak into a URL.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

from ocog_lib.errors import InputError
from ocog_lib.remote.child import FreePortServer
from ocog_lib.remote.postgres import free_port

INSTALL_HINT = "install Debian's package (apt-get install redis-server) or run `make redis`"


def find_redis_server(path: str | Path | None = None) -> Path:
    """`redis-server` from `path`, $OCOG_REDIS_SERVER or PATH. Not resolved: Debian's is a
    link to redis-check-rdb, which acts by the name it is called by."""
    explicit = path or os.environ.get("OCOG_REDIS_SERVER")
    found = str(explicit) if explicit else shutil.which("redis-server")
    if found and Path(found).is_file() and os.access(found, os.X_OK):
        return Path(found).absolute()
    where = explicit or "PATH"
    raise InputError("Redis server (redis-server)", f"not found in {where}: {INSTALL_HINT}")


class EmbeddedRedis(FreePortServer):
    """A Redis server on 127.0.0.1 for as long as the object (or `with`) lives."""

    LABEL = "EmbeddedRedis"
    CHILD = "EmbeddedRedis (redis-server)"
    ANNOUNCEMENT = r"PORT (\d+)"
    PORT_TAKEN_LOG = ("Address already in use", "Could not create server TCP listening socket")

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        binary: str | Path | None = None,
        startup_timeout_s: float = 30.0,
    ):
        super().__init__(host, startup_timeout_s)
        self._own_root = root is None  # a temporary folder, removed on stop
        self.root = Path(root).absolute() if root is not None else None
        self.requested_port = port
        self.binary = binary

    @classmethod
    def for_data_dir(cls, data_dir: str | Path, **kw) -> EmbeddedRedis:
        """The project's server: its folder and log under `<data_dir>/redis/`."""
        return cls(Path(data_dir) / "redis", **kw)

    @property
    def log_path(self) -> Path | None:
        return self.root / "redis.log" if self.root is not None else None

    def url_for(self, db: int = 0) -> str:
        """`redis://127.0.0.1:<port>/<db>` (no password: loopback only)."""
        if self.port is None:
            raise InputError(self.LABEL, "not started: call start() first")
        return f"redis://{self.host}:{self.port}/{int(db)}"

    @property
    def url(self) -> str:
        return self.url_for(0)

    def __repr__(self) -> str:
        where = f"{self.host}:{self.port}" if self.port else "not started"
        return f"EmbeddedRedis({where}, pid={self.pid})"

    # -- lifecycle
    def stop(self) -> None:
        """SIGTERM by PID (no persistence: it exits at once); SIGKILL if it lingers."""
        proc, self._proc = self._proc, None
        self.port = None
        if proc is not None:
            stop_process_group(proc)
        if self._own_root and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def _spawn(self) -> subprocess.Popen:
        binary = find_redis_server(self.binary)
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="ocog-redis-"))
        self.root.mkdir(parents=True, exist_ok=True)
        port = self.requested_port or free_port(self.host)
        args = [str(binary), "--bind", self.host, "--port", str(port), "--save", "",
                "--appendonly", "no", "--dir", str(self.root), "--daemonize", "no",
                "--protected-mode", "yes", "--logfile", str(self.log_path)]  # fmt: skip
        # the shell announces the port, then *is* redis-server (same PID)
        cmd = ["/bin/sh", "-c", f'echo "PORT {port}"; exec "$@"', "sh", *args]
        self.log_path.write_bytes(b"")  # this start's log only: port-taken is read from it
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip

    def _started(self, announcement: re.Match) -> None:
        self._wait_ready()

    def _why_exited(self) -> str:
        return self._log_tail()

    def _wait_ready(self) -> None:
        """Until PING answers PONG."""
        self._wait_ready_by(lambda: None if ping(self.host, self.port) else "no PONG", 0.05)


def ping(host: str, port: int | None, timeout_s: float = 1.0) -> bool:
    """True when a Redis server answers PING on host:port (plain RESP, no client library)."""
    if port is None:
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def stop_process_group(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the process by PID, wait; then SIGKILL its process group (whatever it left)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
