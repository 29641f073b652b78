"""WAN emulation: a TCP proxy on 127.0.0.1 that adds latency per request and caps bandwidth.

Remote numbers measured against a loopback server mean nothing without the link a user
has. The shaper sits between a client and a server (e.g. the embedded S3) and imposes:
- RTT per request: the first byte of each response is held `rtt_ms` after it leaves
  the server (response time = server time + RTT, as on a real link). A request is one
  write burst of the client; on a keep-alive connection every request pays the RTT,
  not just the first. A new connection costs no extra RTT: moto closes the connection
  after every response, and charging a handshake would bill that endpoint limit to the
  link.
- a bandwidth cap on the server->client direction, shared by all connections: one
  virtual link that each chunk reserves for `len / cap` seconds (first come, first
  served), so N parallel connections share `cap_mb_s` (MB = 1e6 bytes) between them.
- optional faults for the first `count` responses longer than `after_bytes`: a reset
  (RST) or a truncation (clean close) right after `after_bytes` of the response, or a
  stall (bytes stop, socket stays open).

It runs in its own process (asyncio, stdlib only), started and stopped by PID, so it
never competes for the loader's GIL; it does take CPU (about a core at 1 GB/s).

It also counts what crosses it (`Shaper.counters()`): bytes each way (HTTP headers
included: these are bytes on the wire), responses started and connections accepted. The
proxy process writes them into a small file-backed shared memory block the parent reads
at any moment, so a benchmark can charge wire bytes to every loader, GDAL-based ones
whose traffic it cannot see otherwise. Counters run from the start of the process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import mmap
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ocog_lib.errors import InputError
from ocog_lib.remote.child import ChildServer

_CHUNK = 256 * 1024
# The counter block: a sequence number (odd while the proxy writes), then the counters.
_BLOCK = struct.Struct("=5q")
_SEQ = struct.Struct("=q")
_FIELDS = ("bytes_down", "bytes_up", "requests", "connections")
_DOWN, _UP, _REQUESTS, _CONNECTIONS = range(len(_FIELDS))


@dataclass(frozen=True)
class ShaperCounters:
    """What crossed the shaper since it started. `bytes_down` (server->client) and
    `bytes_up` (client->server) are raw TCP payload, HTTP headers included; `requests`
    counts responses that started; `connections` counts accepted client connections."""

    bytes_down: int = 0
    bytes_up: int = 0
    requests: int = 0
    connections: int = 0

    def __sub__(self, other: ShaperCounters) -> ShaperCounters:
        """The traffic between two readings: `after - before`."""
        return ShaperCounters(*(getattr(self, f) - getattr(other, f) for f in _FIELDS))


def _counter_dir() -> str | None:
    """/dev/shm where there is one (memory, never written back to disk), else the tmp dir."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


class _CounterBlock:
    """The file-backed shared block: one writer (the proxy's event loop), any readers.

    A seqlock keeps a reading consistent across the four counters without a lock the
    other process could hold: the writer makes the sequence odd, writes, makes it even;
    a reader retries until it sees the same even sequence before and after.
    """

    def __init__(self, path: str | os.PathLike[str], fd: int | None = None):
        self.path = Path(path)
        if fd is None:
            fd = os.open(self.path, os.O_RDWR)
        try:
            if os.fstat(fd).st_size < _BLOCK.size:
                os.ftruncate(fd, _BLOCK.size)
            self._map = mmap.mmap(fd, _BLOCK.size)
        finally:
            os.close(fd)
        self._seq = 0
        self._values = [0] * len(_FIELDS)

    @classmethod
    def create(cls) -> _CounterBlock:
        fd, name = tempfile.mkstemp(prefix="ocog-shaper-", suffix=".counters", dir=_counter_dir())
        return cls(name, fd)

    def add(self, index: int, n: int) -> None:
        self._values[index] += n
        self._seq += 1
        _SEQ.pack_into(self._map, 0, self._seq)
        _BLOCK.pack_into(self._map, 0, self._seq, *self._values)
        self._seq += 1
        _SEQ.pack_into(self._map, 0, self._seq)

    def read(self, patience_s: float = 0.5) -> ShaperCounters:
        give_up = time.monotonic() + patience_s
        while True:
            (before,) = _SEQ.unpack_from(self._map, 0)
            seq, *values = _BLOCK.unpack_from(self._map, 0)
            if before % 2 == 0 and seq == before:
                return ShaperCounters(*values)
            if time.monotonic() > give_up:  # the writer died mid-update (SIGKILL)
                return ShaperCounters(*values)
            time.sleep(0)  # the writer is mid-update: let it finish

    def close(self, *, unlink: bool = False) -> None:
        with contextlib.suppress(BufferError, ValueError):
            self._map.close()
        if unlink:
            self.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Fault:
    """Break the first `count` responses that grow past `after_bytes` (headers included),
    right after those bytes; shorter responses pass untouched and do not count."""

    kind: str  # "reset" (RST), "truncate" (clean close), "stall" (hold the bytes back)
    after_bytes: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.kind not in ("reset", "truncate", "stall"):
            raise InputError(self.kind, "fault kind must be reset, truncate or stall")
        if self.after_bytes < 0 or self.count < 0:
            raise InputError(self, "after_bytes and count must be >= 0")


class Shaper(ChildServer):
    """The proxy process: `with Shaper(host, port, rtt_ms=30, cap_mb_s=100) as s: s.port`."""

    LABEL = "Shaper"
    CHILD = "Shaper (proxy)"

    def __init__(
        self,
        target_host: str,
        target_port: int,
        rtt_ms: float = 30.0,
        cap_mb_s: float | None = 100.0,
        *,
        fault: Fault | None = None,
        host: str = "127.0.0.1",
        startup_timeout_s: float = 15.0,
    ):
        if rtt_ms < 0 or (cap_mb_s is not None and cap_mb_s <= 0):
            raise InputError("Shaper", "rtt_ms must be >= 0 and cap_mb_s > 0 (or None)")
        super().__init__(host, startup_timeout_s)
        self.target_host = target_host
        self.target_port = int(target_port)
        self.rtt_ms = rtt_ms
        self.cap_mb_s = cap_mb_s
        self.fault = fault
        self._counters: _CounterBlock | None = None
        self._final: ShaperCounters | None = None  # the last reading, kept after stop()

    # -- lifecycle (start, stop, with: ChildServer)
    def _spawn(self) -> subprocess.Popen:
        self._counters, self._final = _CounterBlock.create(), None
        cmd = [
            sys.executable, "-m", "ocog_lib.remote.shaper",
            "--listen", self.host, "--target-host", self.target_host,
            "--target-port", str(self.target_port), "--rtt-ms", str(self.rtt_ms),
            "--parent-pid", str(os.getpid()), "--counters", str(self._counters.path),
        ]  # fmt: skip
        if self.cap_mb_s is not None:
            cmd += ["--cap-mb-s", str(self.cap_mb_s)]
        if self.fault is not None:
            cmd += ["--fault", json.dumps(asdict(self.fault))]
        return self._popen(cmd)

    def _stopped(self) -> None:
        block, self._counters = self._counters, None
        if block is not None:
            self._final = block.read()  # the proxy has exited: these are final
            block.close(unlink=True)

    def counters(self) -> ShaperCounters:
        """What has crossed the shaper so far (cheap: a read of shared memory, no I/O).

        Take one reading before and one after a run and subtract them. After `stop()`
        this keeps answering the final counts.
        """
        if self._counters is not None:
            return self._counters.read()
        if self._final is not None:
            return self._final
        raise InputError("Shaper", "not started: call start() first")


# ------------------------------------------------------------------ the proxy process


class _Link:
    """The shared downstream link: each chunk reserves it for len/rate seconds, in order."""

    def __init__(self, rate_bytes_s: float | None):
        self.rate = rate_bytes_s
        self.free_at = 0.0

    async def transmit(self, n: int) -> None:
        if not self.rate:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        start = max(now, self.free_at)
        self.free_at = start + n / self.rate
        await asyncio.sleep(self.free_at - now)  # the chunk has crossed the link


class _NoCounters:
    """Counting switched off (a proxy started by hand, without --counters)."""

    def add(self, index: int, n: int) -> None:
        pass


class _Proxy:
    def __init__(
        self,
        target: tuple[str, int],
        rtt_s: float,
        link: _Link,
        fault: Fault | None,
        counters: _CounterBlock | _NoCounters | None = None,
    ):
        self.target = target
        self.rtt_s = rtt_s
        self.link = link
        self.fault = fault
        self.faults_left = fault.count if fault else 0
        self.counters = counters or _NoCounters()

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.counters.add(_CONNECTIONS, 1)
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            _abort(client_w)
            return
        state: dict = {"pending": False}  # a request went up; its response has not started
        up = state["up"] = asyncio.create_task(self._upstream(client_r, server_w, state))
        try:
            await self._downstream(server_r, client_w, state)
        finally:
            up.cancel()
            with contextlib.suppress(BaseException):
                await up
            server_w.close()
            if not client_w.is_closing():
                client_w.close()

    async def _upstream(
        self, client_r: asyncio.StreamReader, server_w: asyncio.StreamWriter, state: dict
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await client_r.read(_CHUNK):
                state["pending"] = True
                self.counters.add(_UP, len(chunk))
                server_w.write(chunk)
                await server_w.drain()
            if server_w.can_write_eof():
                server_w.write_eof()  # the client is done sending; let the response finish

    async def _downstream(
        self, server_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, state: dict
    ) -> None:
        sent = 0  # bytes of the current response forwarded so far
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await server_r.read(_CHUNK):
                if state["pending"]:  # the first bytes of a new response
                    state["pending"] = False
                    sent = 0
                    self.counters.add(_REQUESTS, 1)
                    if self.rtt_s:
                        await asyncio.sleep(self.rtt_s)
                if self.faults_left > 0 and sent + len(chunk) > self.fault.after_bytes:
                    self.faults_left -= 1  # one event loop: no other response races us
                    head = chunk[: max(0, self.fault.after_bytes - sent)]
                    if head:
                        await self.link.transmit(len(head))
                        self.counters.add(_DOWN, len(head))  # before the write: see below
                        client_w.write(head)
                        await client_w.drain()
                    await self._break(client_w, state["up"])
                    return
                await self.link.transmit(len(chunk))
                # counted before the write: a write can reach the client at once, and a
                # reader that has its bytes must never see a count short of them
                self.counters.add(_DOWN, len(chunk))
                client_w.write(chunk)
                await client_w.drain()
                sent += len(chunk)

    async def _break(self, client_w: asyncio.StreamWriter, up: asyncio.Task) -> None:
        kind = self.fault.kind
        if kind == "reset":
            _abort(client_w)
        elif kind == "truncate":
            client_w.close()
        else:  # stall: silent but open until the client hangs up (its read ends `up`)
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(up), timeout=3600)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0): the peer sees 'connection reset by peer'."""
    sock = writer.transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _main(args: argparse.Namespace) -> None:
    fault = Fault(**json.loads(args.fault)) if args.fault else None
    link = _Link(args.cap_mb_s * 1e6 if args.cap_mb_s else None)
    counters = _CounterBlock(args.counters) if args.counters else None
    target = (args.target_host, args.target_port)
    proxy = _Proxy(target, args.rtt_ms / 1000.0, link, fault, counters)
    server = await asyncio.start_server(proxy.handle, args.listen, 0, limit=_CHUNK)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            if args.parent_pid and os.getppid() != args.parent_pid:
                break  # orphaned: the parent died without stopping us


def _serve(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="ocog WAN shaper (TCP proxy)")
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--target-host", required=True)
    parser.add_argument("--target-port", type=int, required=True)
    parser.add_argument("--rtt-ms", type=float, default=30.0)
    parser.add_argument("--cap-mb-s", type=float, default=None)
    parser.add_argument("--fault", default=None, help="JSON of a Fault")
    parser.add_argument("--parent-pid", type=int, default=0)
    parser.add_argument("--counters", default=None, help="counter block file (made by Shaper)")
    asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    _serve()
