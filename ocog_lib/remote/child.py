"""A helper server we start as a child process (the embedded S3 endpoint, the WAN shaper):
it announces its port on its first stdout line, and we stop it by PID. `ChildServer` owns
that lifecycle; a subclass says what the child runs and what it needs around it."""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Callable
from typing import IO, Any, ClassVar, Self

from ocog_lib.errors import InputError


def wait_for_announcement(
    proc: subprocess.Popen, pattern: str, name: str, timeout_s: float, why_exited: Callable[[], str]
) -> re.Match:
    """The child's stdout line matching `pattern` ("PORT <n> ..."), or a clear error naming
    `name` when it exits first (`why_exited()` says why) or stays silent past the timeout."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()  # raw reads: a buffered readline could swallow the next line
    pending = b""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if m := re.match(pattern, line.decode(errors="replace")):
                return m
        if proc.poll() is not None:
            raise InputError(name, f"exited at start: {why_exited()}")
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            pending += os.read(fd, 4096)
    raise InputError(name, f"not listening after {timeout_s:g} s")


def stop_child(proc: subprocess.Popen | None, grace_s: float = 5.0) -> None:
    """Terminate by PID, wait, kill if it lingers, close its pipes."""
    if proc is None:
        return
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace_s)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


class ChildServer:
    """A loopback server in a child process for as long as the object (or `with`) lives.

    `start()` runs `_spawn()`, reads the port from the child's announcement (`ANNOUNCEMENT`,
    first group) and calls `_started()`; any failure after the spawn stops the child
    again. `stop()` ends it by PID and calls `_stopped()`. Subclasses provide `_spawn`
    (usually through `_popen`) and may override the other hooks.
    """

    LABEL: ClassVar[str] = "ChildServer"  # names the object in "not started" errors
    CHILD: ClassVar[str] = "child server"  # names the child when its start fails
    ANNOUNCEMENT: ClassVar[str] = r"PORT (\d+)"

    def __init__(self, host: str, startup_timeout_s: float):
        self.host = host
        self.startup_timeout_s = startup_timeout_s
        self.port: int | None = None
        self._proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def url(self) -> str:
        if self.port is None:
            raise InputError(self.LABEL, "not started: call start() first")
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        if self._proc is not None:
            return self
        self._proc = self._spawn()
        try:
            m = wait_for_announcement(
                self._proc, self.ANNOUNCEMENT, self.CHILD, self.startup_timeout_s, self._why_exited
            )
            self.port = int(m.group(1))
            self._started(m)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Terminate the child by PID, wait, kill if it lingers; then the subclass's cleanup."""
        proc, self._proc = self._proc, None
        self.port = None
        stop_child(proc)
        self._stopped()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()

    # -- what subclasses provide
    def _spawn(self) -> subprocess.Popen:
        raise NotImplementedError

    def _popen(
        self,
        cmd: list[str],
        *,
        env: dict[str, str] | None = None,
        stderr: IO[Any] | int = subprocess.PIPE,
    ) -> subprocess.Popen:
        """The child, its stdout piped (the announcement), in a session of its own."""
        return subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=stderr, start_new_session=True
        )

    def _why_exited(self) -> str:
        """What the child said before exiting at start (its piped stderr, by default)."""
        proc = self._proc
        if proc is None or proc.stderr is None:
            return ""
        return proc.stderr.read().decode(errors="replace")[-800:].strip()

    def _started(self, announcement: re.Match) -> None:
        """The child announced its port (`self.port` is set); wait for more if it needs."""

    def _stopped(self) -> None:
        """The child is gone: release what was made for it."""


class PortTaken(Exception):
    """The port we picked was taken before the server bound it: pick another."""


class FreePortServer(ChildServer):
    """A child server on `requested_port`, or on a free port it picks, picking again (up to
    PORT_ATTEMPTS times) when its readiness check raises PortTaken."""

    PORT_ATTEMPTS: ClassVar[int] = 5
    # log lines of a child that lost its port to another process before binding it
    PORT_TAKEN_LOG: ClassVar[tuple[str, ...]] = ()
    requested_port: int | None = None

    def start(self) -> Self:
        if self._proc is not None:
            return self
        attempts = 1 if self.requested_port else self.PORT_ATTEMPTS
        for attempt in range(attempts):
            try:
                return super().start()
            except PortTaken as exc:
                if attempt == attempts - 1:
                    raise InputError(self.CHILD, f"no free port after {attempts} tries: "
                                     f"{exc}") from None  # fmt: skip
        raise AssertionError("unreachable")

    def _wait_ready_by(self, probe: Callable[[], str | None], poll_s: float) -> None:
        """Until `probe()` answers None (ready; else why not); a child that exited with a
        PORT_TAKEN_LOG line in its log is PortTaken, so `start` picks another port."""
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                tail = self._log_tail()
                if any(s in tail for s in self.PORT_TAKEN_LOG):
                    raise PortTaken(f"port {self.port} taken")
                raise InputError(self.CHILD, f"exited at start: {tail}")
            why = probe()
            if why is None:
                return
            if time.monotonic() > deadline:
                raise InputError(self.CHILD, f"not ready after {self.startup_timeout_s:g} s: "
                                 f"{why}; log: {self._log_tail()}")  # fmt: skip
            time.sleep(poll_s)

    def _log_tail(self) -> str:
        """The end of the child's log file (`self.log_path`, set by the subclass)."""
        try:
            return self.log_path.read_text(errors="replace")[-800:].strip()
        except (OSError, AttributeError):
            return ""


def run_command(cmd: list[str], env: dict[str, str]) -> int:
    """Run `cmd` in the foreground around a server we hold; Ctrl-C reaches it as SIGINT
    (a UI shuts down cleanly) and we wait for its exit status."""
    child = subprocess.Popen(cmd, env=env)
    try:
        return child.wait()
    except KeyboardInterrupt:
        child.send_signal(signal.SIGINT)
        return child.wait()
