"""A helper server we start as a child process (the embedded S3 endpoint, the WAN shaper):
it announces its port on its first stdout line, and we stop it by PID."""

from __future__ import annotations

import os
import re
import select
import subprocess
import time
from collections.abc import Callable

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
