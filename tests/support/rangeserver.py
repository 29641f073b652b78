"""A tiny HTTP/1.1 server that honours single byte ranges (http.server does not).

Stands in for a static host or Azure Blob in tests: keep-alive connections, ETags,
an optional SAS-like `sig` check (403 with an Azure-style body when it is wrong), and
a switch that makes it ignore Range the way http.server does, and 302 redirects.
"""

from __future__ import annotations

import hashlib
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class LoopbackHTTP:
    """A threaded HTTP server on 127.0.0.1 (a free port) for the block's duration; a
    subclass says which handler serves (`handler()`) and where its URL points (`path`)."""

    path = ""
    _server: ThreadingHTTPServer | None = None

    def handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.path}"

    def __enter__(self):
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class RangeServer(LoopbackHTTP):
    def __init__(
        self,
        files: dict[str, bytes],
        *,
        sig: str | None = None,
        ignore_range: bool = False,
        redirects: dict[str, str] | None = None,
    ):
        self.files = dict(files)
        self.redirects = dict(redirects or {})
        self.sig = sig
        self.ignore_range = ignore_range
        self.connections = 0
        self.requests = 0
        self._lock = threading.Lock()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(_Handler):
            server_owner = owner

        return Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body leave as separate writes
    server_owner: RangeServer

    def log_message(self, format, *args):  # noqa: A002
        pass

    def setup(self) -> None:
        super().setup()
        with self.server_owner._lock:
            self.server_owner.connections += 1

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        owner = self.server_owner
        with owner._lock:
            owner.requests += 1
        parts = urlsplit(self.path)
        if owner.sig is not None and parse_qs(parts.query).get("sig") != [owner.sig]:
            body = b"<Error><Code>AuthenticationFailed</Code><Message>Signature did not match."
            self._reply(403, body + b"</Message></Error>", {"Content-Type": "application/xml"})
            return
        if parts.path in owner.redirects:
            self._reply(302, b"", {"Location": owner.redirects[parts.path]})
            return
        data = owner.files.get(parts.path)
        if data is None:
            self._reply(404, b"<Error><Code>BlobNotFound</Code></Error>", {})
            return
        etag = '"' + hashlib.md5(data).hexdigest() + '"'
        m = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
        if m is None or owner.ignore_range:
            self._reply(200, data, {"ETag": etag})
            return
        begin, end = int(m.group(1)), min(int(m.group(2)), len(data) - 1)
        if begin >= len(data):
            self._reply(416, b"", {"Content-Range": f"bytes */{len(data)}"})
            return
        headers = {"ETag": etag, "Content-Range": f"bytes {begin}-{end}/{len(data)}"}
        self._reply(206, data[begin : end + 1], headers)

    do_HEAD = do_GET
