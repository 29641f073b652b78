"""A fault-injecting HTTP front: answers the first requests with errors, forwards the rest.

Retry logic is only trusted once it has met real failures. `FaultFront` stands in front
of a real server (the embedded S3, say) and answers the first requests with the HTTP
statuses it was given (500, 503 with an S3-style XML body, as a throttled or failing
store would), then forwards every later request byte for byte, Host header and SigV4
signature included, so the server still checks what the client signed. Faults below
HTTP (resets, truncated bodies, stalls) belong to the WAN shaper
(`ocog_lib.remote.shaper.Fault`).
It runs on a thread of the calling process: a test tool, not a benchmark component.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from ocog_lib.errors import InputError

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "trailer"}
_REASONS = {500: "InternalError", 502: "BadGateway", 503: "SlowDown", 504: "GatewayTimeout"}


class FaultFront:
    """`with FaultFront("http://127.0.0.1:PORT", [503, 500]) as front: front.url`.

    Only requests whose `METHOD path?query` contains `match` (all when None) draw from
    the injected statuses, e.g. `match="partNumber=2"` fails one part of an upload.
    """

    def __init__(
        self,
        target_url: str,
        statuses: Sequence[int] = (503,),
        *,
        match: str | None = None,
        host: str = "127.0.0.1",
    ):
        target = urlsplit(target_url)
        if target.scheme != "http" or not target.hostname or not target.port:
            raise InputError(target_url, "FaultFront forwards to http://host:port only")
        self.target = (target.hostname, target.port)
        self.host = host
        self.match = match
        self._statuses = list(statuses)
        self._lock = threading.Lock()
        self.faulted = 0  # requests answered with an injected status
        self.forwarded = 0  # requests passed to the target
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise InputError("FaultFront", "not started: call start() first")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def inject(self, statuses: Sequence[int]) -> None:
        """Queue more injected statuses for the next requests."""
        with self._lock:
            self._statuses.extend(statuses)

    def _next_fault(self, request: str) -> int | None:
        with self._lock:
            if self._statuses and (self.match is None or self.match in request):
                self.faulted += 1
                return self._statuses.pop(0)
            self.forwarded += 1
            return None

    def start(self) -> FaultFront:
        if self._server is not None:
            return self
        front = self

        class Handler(_ForwardingHandler):
            owner = front

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="ocog-fault-front", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FaultFront:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _ForwardingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body leave as separate writes
    owner: FaultFront

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass  # no line per request on stderr

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status = self.owner._next_fault(f"{self.command} {self.path}")
        if status is not None:
            code = _REASONS.get(status, "InjectedFault")
            payload = (
                f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                f"<Message>injected by ocog FaultFront</Message></Error>"
            ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
            return
        conn = http.client.HTTPConnection(*self.owner.target, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            self.send_response(resp.status, resp.reason)
            head = self.command == "HEAD"  # keeps the object's Content-Length
            for k, v in resp.getheaders():
                if k.lower() not in _HOP_BY_HOP and (head or k.lower() != "content-length"):
                    self.send_header(k, v)
            if not head:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        finally:
            conn.close()

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _handle
