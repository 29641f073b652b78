"""Remote objects read with ranged GETs: retries, deadlines, counters; HTTP(S) URLs and SAS.

Requests go over one urllib3 pool per process, shared by every source and safe for many
reader threads at once. Reads retry what a retry can fix (5xx, throttling, resets,
timeouts, short bodies) with backoff and jitter inside a stated deadline, fail at once on
what it cannot (401/403, 404, 416, an object changed under us), and never return bytes
other than the ones asked for. `RemoteObject` is that machinery; `HttpObject` reads plain
(or SAS-signed) URLs with it, `ocog_lib.storage.s3.S3Object` signs its requests first.
"""

from __future__ import annotations

import logging
import os
import random
import re
import threading
import time
from dataclasses import dataclass, fields
from http.client import HTTPException
from typing import Any, ClassVar
from urllib.parse import urljoin, urlsplit

from ocog_lib.errors import InputError
from ocog_lib.secrets import redact_text, redact_uri
from ocog_lib.storage.source import ByteSource, track_source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemoteOptions:
    """How hard a remote source tries, and how long it may take.

    Every `read()`/`size()` returns or raises within `deadline_s`, retries included;
    one request (connect, headers, body) gets at most `request_timeout_s` of it, and
    no socket waits longer than `read_timeout_s` for the next bytes. The pool holds
    `max_connections` per host: size it to the number of reads in flight.
    """

    attempts: int = 6
    backoff_s: float = 0.1
    backoff_max_s: float = 4.0
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 15.0
    request_timeout_s: float = 60.0
    deadline_s: float = 120.0
    max_connections: int = 64

    # environment variable -> field, so a run can be tuned without code
    ENV: ClassVar[dict[str, str]] = {
        "OCOG_REMOTE_ATTEMPTS": "attempts",
        "OCOG_REMOTE_CONNECT_TIMEOUT_S": "connect_timeout_s",
        "OCOG_REMOTE_READ_TIMEOUT_S": "read_timeout_s",
        "OCOG_REMOTE_REQUEST_TIMEOUT_S": "request_timeout_s",
        "OCOG_REMOTE_DEADLINE_S": "deadline_s",
        "OCOG_REMOTE_MAX_CONNECTIONS": "max_connections",
    }

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.max_connections < 1:
            raise InputError(self, "attempts and max_connections must be >= 1")
        for f in fields(self):
            if f.name.endswith("_s") and getattr(self, f.name) <= 0 and f.name != "backoff_s":
                raise InputError(self, f"{f.name} must be > 0")

    @classmethod
    def from_env(cls, **overrides: Any) -> RemoteOptions:
        values: dict[str, Any] = {}
        for var, name in cls.ENV.items():
            text = os.environ.get(var)
            if text:
                kind = int if name in ("attempts", "max_connections") else float
                try:
                    values[name] = kind(text)
                except ValueError as exc:
                    raise InputError(var, f"not a number: {text!r}") from exc
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


class RetryableFailure(Exception):
    """One attempt failed in a way another attempt may fix."""


class FatalFailure(Exception):
    """One attempt failed in a way no retry fixes; the message is the user-facing cause."""


# One pool manager per process and pool shape, shared by every source: connections to
# one endpoint are reused across objects (no handshake per file) and never cross a fork.
_POOLS: dict[tuple, Any] = {}
_POOLS_PID = -1
_POOLS_LOCK = threading.Lock()


def _pool_manager(max_connections: int, ca_certs: str | None) -> Any:
    global _POOLS_PID
    import urllib3

    key = (max_connections, ca_certs)
    pid = os.getpid()
    with _POOLS_LOCK:
        if _POOLS_PID != pid:
            _POOLS.clear()  # inherited from a parent: its sockets are not ours
            _POOLS_PID = pid
        pm = _POOLS.get(key)
        if pm is None:
            kw: dict[str, Any] = {"ca_certs": ca_certs} if ca_certs else {}
            pm = _POOLS[key] = urllib3.PoolManager(
                num_pools=32, maxsize=max_connections, block=True, retries=False, **kw
            )
        return pm


# urllib3 logs request lines (query strings included) at DEBUG: importing
# ocog_lib.secrets redacted them (and GDAL's) as they are made.
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)
_READ_CHUNK = 1 << 20
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}


def _error_summary(body: bytes) -> str:
    """`Code: first sentence of Message` from an S3/Azure XML error body, else ''."""
    text = body[:4096].decode("utf-8", "replace")
    code = re.search(r"<Code>([^<]{1,80})</Code>", text)
    message = re.search(r"<Message>([^<]{1,400})</Message>", text)
    parts = []
    if code:
        parts.append(code.group(1).strip())
    if message:
        first = message.group(1).strip().splitlines()[0]
        parts.append(first[:160])
    return ": ".join(parts)


class RemoteObject(ByteSource):
    """Ranged GETs with retries, deadlines and counters; subclasses say how to sign."""

    def __init__(self, options: RemoteOptions | None):
        self.options = options or RemoteOptions.from_env()
        self._size: int | None = None
        self._etag: str | None = None
        track_source(self)

    # -- what subclasses provide
    def _url(self) -> str:
        raise NotImplementedError

    def _headers(self, method: str, url: str, headers: dict[str, str]) -> dict[str, str]:
        """Headers to send (signed where the scheme signs)."""
        return headers

    def _secrets(self) -> list[str]:
        """Literal secrets to scrub from any message."""
        return []

    def _ca_certs(self) -> str | None:
        return None

    def _follow_redirects(self) -> bool:
        return False

    def _explain(self, status: int, headers: Any, summary: str) -> str | None:
        """A scheme-specific cause for an unretryable status, or None for the default."""
        return None

    # -- picklable state: subclasses add their own fields
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        for name in ("_lock", "_counters"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        track_source(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"

    # -- public API
    def size(self) -> int:
        if self._size is None:
            self._size = self._fetch_size()
        return self._size

    def head(self, length: int) -> tuple[bytes, int]:
        """The first `length` bytes and the size in ONE request: a ranged GET's
        Content-Range carries the size, so opening a remote TIFF costs one round trip."""
        if self._size is not None or length <= 0:
            return super().head(length)
        return self._with_retries(f"the first {length} bytes",
                                  lambda deadline: self._get_range(0, length, deadline, True))

    def version(self) -> str | None:
        """The ETag the object answered with (its first answer: later reads insist on it)."""
        self.size()
        return self._etag

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise InputError(self.uri, f"invalid range: offset {offset}, length {length}")
        if length == 0:
            return b""
        if self._size is not None and offset + length > self._size:
            raise self._fail(
                f"range {offset}+{length} lies past the end of the object ({self._size} bytes)"
            )
        return self._with_retries(
            f"{length} bytes at offset {offset}",
            lambda deadline: self._get_range(offset, length, deadline)[0],
        )

    def close(self) -> None:
        """Nothing to close: connections belong to the per-process pool."""

    # -- machinery
    def _fetch_size(self) -> int:
        return self._with_retries("size", lambda deadline: self._get_range(0, 1, deadline)[1])

    def _learn(self, size: int | None, etag: str | None) -> None:
        with self._lock:
            if size is not None and self._size is None:
                self._size = size
            if etag and self._etag is None:
                self._etag = etag

    def _fail(self, cause: str) -> InputError:
        self._counters.add(failures=1)
        return InputError(self.uri, redact_text(cause, self._secrets()))

    def _with_retries(self, what: str, attempt_fn: Any) -> Any:
        opts = self.options
        start = time.monotonic()
        deadline = start + opts.deadline_s
        last = ""
        for attempt in range(opts.attempts):
            if attempt:
                self._counters.add(retries=1)
            fatal = None
            try:
                return attempt_fn(deadline)
            except FatalFailure as exc:
                fatal = str(exc)
            except RetryableFailure as exc:
                last = redact_text(exc, self._secrets())
            if fatal is not None:  # raised out here: urllib3's error (the raw URL) stays behind
                raise self._fail(fatal)
            log.debug("%s: %s failed (%s), attempt %d", self.uri, what, last, attempt + 1)
            left = deadline - time.monotonic()
            if attempt + 1 == opts.attempts or left <= 0:
                break
            pause = random.uniform(0, min(opts.backoff_max_s, opts.backoff_s * 2**attempt))
            time.sleep(min(pause, left))
            if time.monotonic() >= deadline:
                break
        took = time.monotonic() - start
        raise self._fail(
            f"reading {what} failed after {attempt + 1} attempt(s) in {took:.1f} s "
            f"(deadline {opts.deadline_s:g} s); last error: {last}"
        )

    def _request(self, method: str, url: str, headers: dict[str, str], deadline: float) -> Any:
        """One HTTP request, response headers read, body not yet."""
        import urllib3
        from urllib3.exceptions import (
            EmptyPoolError,
            HTTPError,
            LocationParseError,
            ProxyError,
            SSLError,
        )

        opts = self.options
        left = deadline - time.monotonic()
        if left <= 0:
            raise RetryableFailure("deadline reached before the request was sent")
        budget = min(left, opts.request_timeout_s)
        timeout = urllib3.Timeout(
            connect=min(opts.connect_timeout_s, budget), read=min(opts.read_timeout_s, budget)
        )
        pm = _pool_manager(opts.max_connections, self._ca_certs())
        try:
            resp = pm.urlopen(
                method,
                url,
                headers=self._headers(method, url, headers),
                retries=False,
                redirect=False,
                preload_content=False,
                decode_content=False,
                timeout=timeout,
                pool_timeout=budget,
            )
        except SSLError as exc:
            raise FatalFailure(f"TLS error ({exc})") from None
        except (LocationParseError, ProxyError) as exc:
            raise FatalFailure(f"bad URL or proxy ({exc})") from None
        except EmptyPoolError:
            raise RetryableFailure(f"no free connection within {budget:.1f} s") from None
        except (HTTPError, HTTPException, OSError) as exc:
            raise RetryableFailure(f"{type(exc).__name__}: {exc}") from None
        self._counters.add(requests=1)
        return resp

    def _discard(self, resp: Any, keep_if_small: bool = True) -> bytes:
        """Read a small error body (to report it) or drop the connection; free the slot."""
        body = b""
        try:
            n = resp.headers.get("Content-Length")
            if keep_if_small and n is not None and n.isdigit() and int(n) <= 65536:
                body = resp.read()  # all of it, so the connection can serve the next request
                resp.drain_conn()
                self._counters.add(bytes=len(body))
            else:
                resp.close()
        except Exception:  # noqa: BLE001 - the body of a failed request is best effort
            resp.close()
        finally:
            resp.release_conn()
        return body

    def _get_range(self, offset: int, length: int, deadline: float,
                   up_to: bool = False) -> tuple[bytes, int]:  # fmt: skip
        """One ranged GET: exactly `length` bytes at `offset` (`up_to`: at most, where the
        object ends sooner), and the object's size."""
        url = self._url()
        headers = {"Range": f"bytes={offset}-{offset + length - 1}", "Accept-Encoding": "identity"}
        etag = self._etag
        if etag and not etag.startswith("W/"):
            headers["If-Match"] = etag
        request_deadline = min(deadline, time.monotonic() + self.options.request_timeout_s)
        resp = self._request("GET", url, headers, request_deadline)
        for _ in range(5):
            if not (self._follow_redirects() and resp.status in (301, 302, 303, 307, 308)):
                break
            location = resp.headers.get("Location")
            self._discard(resp)
            if not location:
                raise FatalFailure(f"HTTP {resp.status} redirect without a Location")
            url = urljoin(url, location)
            resp = self._request("GET", url, headers, request_deadline)
        status = resp.status
        if status not in (200, 206):
            summary = _error_summary(self._discard(resp))
            self._raise_for_status(status, resp.headers, summary)
        try:
            total = self._check_range(resp, offset, length, up_to)
            if up_to and total >= 0:
                length = min(length, total - offset)
            data = self._read_body(resp, length, request_deadline)
        finally:
            resp.release_conn()
        got = resp.headers.get("ETag")
        if etag and got and got != etag:
            raise FatalFailure(
                f"object changed while being read (ETag {etag} became {got}); "
                "open it again to read the new version"
            )
        self._learn(total, got)
        return data, total

    def _raise_for_status(self, status: int, headers: Any, summary: str) -> None:
        detail = f" ({summary})" if summary else ""
        if status in _RETRY_STATUS:
            raise RetryableFailure(f"HTTP {status}{detail}")
        special = self._explain(status, headers, summary)
        if special:
            raise FatalFailure(special)
        if status == 404:
            raise FatalFailure(f"HTTP 404: object not found (deleted or never written){detail}")
        if status in (401, 403):
            raise FatalFailure(
                f"HTTP {status}: access denied{detail}; check the credentials (or SAS token) "
                "and that they grant read access to this object"
            )
        if status == 412:
            raise FatalFailure(
                f"HTTP 412: object changed since it was opened (ETag {self._etag}){detail}; "
                "open it again to read the new version"
            )
        if status == 416:
            raise FatalFailure(f"HTTP 416: range lies past the end of the object{detail}")
        if 300 <= status < 400:
            location = redact_uri(headers.get("Location"))
            raise FatalFailure(f"HTTP {status}: redirected to {location}")
        raise FatalFailure(f"HTTP {status}{detail}")

    def _check_range(self, resp: Any, offset: int, length: int, up_to: bool = False) -> int:
        """The object's size, once the response is known to hold exactly our range (with
        `up_to`, a range cut short by the object's end is ours too)."""
        clen = resp.headers.get("Content-Length")
        if resp.status == 200:
            # The server ignored Range: only fine if the whole object is what we asked for.
            whole = clen is not None and clen.isdigit() and (
                int(clen) == length or (up_to and int(clen) < length))
            if offset == 0 and whole:
                return int(clen)
            self._discard(resp, keep_if_small=False)
            raise FatalFailure(
                "the server ignored the Range header (HTTP 200 with the whole object"
                + (f" of {clen} bytes" if clen else "")
                + "); ocog reads COGs with byte-range requests, serve them from a server "
                "that supports them (S3, Azure Blob, nginx, ...)"
            )
        m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
        if not m:
            self._discard(resp, keep_if_small=False)
            raise RetryableFailure("HTTP 206 without a valid Content-Range")
        first, last, total_text = int(m.group(1)), int(m.group(2)), m.group(3)
        total = int(total_text) if total_text != "*" else None
        if up_to and total is not None and first == offset and last == total - 1 < (
                offset + length - 1):
            length = last - first + 1  # the object ends inside the range asked for
        past_end = total is not None and last == total - 1 and last < offset + length - 1
        if first == offset and past_end:
            self._discard(resp, keep_if_small=False)
            raise FatalFailure(
                f"range {offset}+{length} lies past the end of the object ({total} bytes)"
            )
        if first != offset or last != offset + length - 1:
            self._discard(resp, keep_if_small=False)
            raise RetryableFailure(
                f"Content-Range {first}-{last} does not match the requested "
                f"{offset}-{offset + length - 1}"
            )
        if clen is not None and (not clen.isdigit() or int(clen) != length):
            self._discard(resp, keep_if_small=False)
            raise RetryableFailure(
                f"Content-Length {clen} does not match the range length {length}"
            )
        return total if total is not None else -1

    def _read_body(self, resp: Any, length: int, deadline: float) -> bytes:
        """Exactly `length` body bytes, or RetryableFailure; no socket wait outlives `deadline`."""
        from urllib3.exceptions import HTTPError

        chunks: list[bytes] = []
        got = 0
        sock = getattr(getattr(resp, "connection", None), "sock", None)
        try:
            while got < length:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RetryableFailure(
                        f"body took longer than the time left ({got}/{length} bytes)"
                    )
                if sock is not None:
                    sock.settimeout(min(self.options.read_timeout_s, left))
                chunk = resp.read1(min(_READ_CHUNK, length - got))
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
        except (HTTPError, HTTPException, OSError) as exc:
            self._counters.add(bytes=got)
            resp.close()
            raise RetryableFailure(
                f"connection broke after {got}/{length} body bytes ({type(exc).__name__}: {exc})"
            ) from None
        except RetryableFailure:
            self._counters.add(bytes=got)
            resp.close()
            raise
        self._counters.add(bytes=got)
        if got != length:
            resp.close()
            raise RetryableFailure(f"truncated body: {got} of {length} bytes")
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


# --------------------------------------------------------------------------- HTTP(S)

SAS_ENV_VARS = ("OCOG_AZURE_SAS", "AZURE_STORAGE_SAS_TOKEN")
_AZURE_HOST = re.compile(
    r"\.(blob|dfs)\.core\.(windows\.net|chinacloudapi\.cn|usgovcloudapi\.net)$"
)


def with_sas(url: str, sas_token: str | None) -> str:
    """`url` with the SAS query appended, unless it already carries a signature."""
    if not sas_token:
        return url
    token = sas_token.lstrip("?")
    parts = urlsplit(url)
    if re.search(r"(^|&)sig=", parts.query):
        return url
    return f"{url}{'&' if parts.query else '?'}{token}"


def sas_from_env(url: str) -> str | None:
    """The SAS token from OCOG_AZURE_SAS / AZURE_STORAGE_SAS_TOKEN, for Azure storage hosts
    only: a token from the environment is never sent to any other server."""
    host = (urlsplit(url).hostname or "").lower()
    if not _AZURE_HOST.search(host):
        return None
    for var in SAS_ENV_VARS:
        if os.environ.get(var):
            return os.environ[var]
    return None


class HttpObject(RemoteObject):
    """An object behind plain HTTP(S) range requests: Azure Blob (SAS), presigned S3
    URLs, any static server that honours Range. `uri` is the redacted URL."""

    def __init__(
        self,
        url: str,
        *,
        sas_token: str | None = None,
        ca_bundle: str | None = None,
        options: RemoteOptions | None = None,
    ):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InputError(redact_uri(url), "not an http(s) URL")
        self.uri = redact_uri(url)
        token = sas_token if sas_token is not None else sas_from_env(url)
        self._sas = token.lstrip("?") if token else None
        self._full_url = with_sas(url, self._sas)
        self.ca_bundle = ca_bundle
        super().__init__(options)

    def _url(self) -> str:
        return self._full_url

    @property
    def signed_url(self) -> str:
        """The URL with its SAS: for GDAL, which reads what the fast path cannot. Secret."""
        return self._full_url

    def _ca_certs(self) -> str | None:
        return self.ca_bundle

    def _follow_redirects(self) -> bool:
        return True

    def _secrets(self) -> list[str]:
        secrets = [self._sas] if self._sas else []
        sig = re.search(r"(?:^|&)sig=([^&]+)", urlsplit(self._full_url).query)
        return secrets + ([sig.group(1)] if sig else [])


def _after_fork_in_child() -> None:
    global _POOLS_LOCK
    _POOLS_LOCK = threading.Lock()
    _POOLS.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
