"""A real `ocog serve` process for tests: started on a free port, stopped by its PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.support.processes import alive


@dataclass(frozen=True)
class Server:
    url: str
    pid: int
    stack: Path  # the stack.json
    data_dir: Path  # the server's $OCOG_DATA_DIR


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM, SIGKILL after 10 s; the process must be gone."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    assert not alive(proc.pid)


@contextmanager
def running_server(root: Path, stack: Path, *args: str) -> Iterator[Server]:
    """`ocog serve --stack stack` (plus `args`) with $OCOG_DATA_DIR = root/data, once
    /healthz answers; its log is root/server.log."""
    port = free_port()
    data = root / "data"
    log = (root / "server.log").open("w")
    cmd = [sys.executable, "-m", "ocog_lib.cli.main", "serve", "--stack", str(stack),
           "--port", str(port), *args]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                            env=os.environ | {"OCOG_DATA_DIR": str(data)})  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ocog serve exited: {log_text(root)}")
            try:
                if requests.get(f"{url}/healthz", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:  # a start-up limit, not a speed target
                raise RuntimeError(f"ocog serve did not answer in 60 s: {log_text(root)}")
            time.sleep(0.2)
        yield Server(url, proc.pid, stack, data)
    finally:
        stop(proc)
        log.close()


def log_text(root: Path) -> str:
    return (root / "server.log").read_text()
