"""Child servers: the port announcement is read or a clear error names the child; stop
works even on a child that ignores SIGTERM; `ChildServer` owns start, stop and cleanup."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ocog_lib.errors import InputError
from ocog_lib.remote.child import ChildServer, stop_child, wait_for_announcement


def _child(code: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def test_announcement_is_read_and_child_stopped():
    proc = _child("import time; print('noise'); print('PORT 4242 ranges=fast', flush=True); "
                  "time.sleep(60)")
    m = wait_for_announcement(proc, r"PORT (\d+) ranges=(\w+)", "toy", 10, lambda: "")
    assert (m.group(1), m.group(2)) == ("4242", "fast")
    stop_child(proc)
    assert proc.returncode is not None and proc.stdout.closed


def test_child_that_exits_names_itself_and_the_cause():
    proc = _child("import sys; sys.stderr.write('bad flag'); sys.exit(3)")
    with pytest.raises(InputError, match=r"toy server.*exited at start: bad flag"):
        wait_for_announcement(
            proc, r"PORT (\d+)", "toy server", 10, lambda: proc.stderr.read().decode()
        )
    stop_child(proc)


def test_silent_child_times_out_and_a_stubborn_one_is_killed():
    proc = _child("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                  "print('ready', flush=True); time.sleep(60)")
    with pytest.raises(InputError, match=r"not listening after 0.5 s"):
        wait_for_announcement(proc, r"PORT (\d+)", "toy", 0.5, lambda: "")
    stop_child(proc, grace_s=0.5)
    assert proc.returncode == -9


class _Toy(ChildServer):
    LABEL, CHILD = "Toy", "toy (child)"

    def __init__(self, code: str):
        super().__init__("127.0.0.1", 10)
        self.code = code
        self.events: list[str] = []

    def _spawn(self) -> subprocess.Popen:
        self.events.append("spawn")
        return self._popen([sys.executable, "-c", self.code])

    def _started(self, announcement) -> None:
        self.events.append(f"started {announcement.group(1)}")

    def _stopped(self) -> None:
        self.events.append("stopped")


def test_child_server_owns_start_and_stop():
    toy = _Toy("import time; print('PORT 4343', flush=True); time.sleep(60)")
    with pytest.raises(InputError, match="Toy: not started"):
        _ = toy.url
    with toy as started:
        assert started is toy and toy.start() is toy  # a second start is a no-op
        assert toy.url == "http://127.0.0.1:4343" and toy.pid is not None
        proc = toy._proc
    assert proc.returncode is not None and toy.pid is None and toy.port is None
    assert toy.events == ["spawn", "started 4343", "stopped"]


def test_child_server_that_exits_at_start_is_cleaned_up_and_says_why():
    toy = _Toy("import sys; sys.stderr.write('no port for you'); sys.exit(2)")
    with pytest.raises(InputError, match=r"toy \(child\).*exited at start: no port for you"):
        toy.start()
    assert toy.events == ["spawn", "stopped"] and toy.pid is None
