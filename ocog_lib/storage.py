"""URIs to byte-range readers.

The engine never opens a dataset per sample: it asks a `ByteSource` for byte ranges.
A source is picklable and opens its handle lazily in the process that reads, so no file
descriptor or connection ever crosses a fork (DataLoader workers, spawn or fork).
Local paths are read with `os.pread` (releases the GIL). `s3://` and `http(s)://`
objects are read with ranged GETs over one urllib3 pool per process, shared by every
source and safe for many reader threads at once; S3 requests are signed with SigV4 by
botocore, so any S3-compatible endpoint works. Remote reads retry what a retry can fix
(5xx, throttling, resets, timeouts, short bodies) with backoff and jitter inside a
stated deadline, fail at once on what it cannot (401/403, 404, 416, an object changed
under us), and never return bytes other than the ones asked for.
"""

from __future__ import annotations

import logging
import os
import random
import re
import threading
import time
import weakref
from dataclasses import dataclass, fields
from http.client import HTTPException
from typing import Any, ClassVar
from urllib.parse import quote, unquote, urljoin, urlsplit

from ocog_lib.errors import InputError
from ocog_lib.secrets import redact_text, redact_uri

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ByteRange:
    offset: int
    length: int

    @property
    def end(self) -> int:
        return self.offset + self.length


def merge_ranges(ranges: list[ByteRange], *, max_gap: int = 0) -> list[tuple[ByteRange, list[int]]]:
    """Coalesce ranges that touch (or lie within `max_gap` bytes) into fewer reads.

    Returns the merged ranges, each with the indices of the input ranges it covers, so a
    caller can slice every original range back out of one read.
    """
    order = sorted(range(len(ranges)), key=lambda i: ranges[i].offset)
    merged: list[tuple[ByteRange, list[int]]] = []
    start = end = -1
    members: list[int] = []
    for i in order:
        r = ranges[i]
        if members and r.offset <= end + max_gap:
            end = max(end, r.end)
            members.append(i)
            continue
        if members:
            merged.append((ByteRange(start, end - start), members))
        start, end, members = r.offset, r.end, [i]
    if members:
        merged.append((ByteRange(start, end - start), members))
    return merged


@dataclass(frozen=True)
class TransferStats:
    """What one source cost in this process: benchmarks report bytes on the wire per sample.

    `bytes` counts body bytes received, discarded ones of failed attempts included;
    HTTP headers are not counted. Counters are per process (a source unpickled in a
    DataLoader worker starts at zero there).
    """

    requests: int = 0
    bytes: int = 0
    retries: int = 0
    failures: int = 0


class _Counters:
    """Thread-safe counters behind `ByteSource.stats()`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(("requests", "bytes", "retries", "failures"), 0)

    def add(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                self._values[name] += delta

    def snapshot(self) -> TransferStats:
        with self._lock:
            return TransferStats(**self._values)


# Every live source, so a forked child can give each fresh locks and zeroed counters: a
# lock another thread held at fork time would stay held forever in the child.
_LIVE_SOURCES: weakref.WeakSet = weakref.WeakSet()


def _after_fork_in_child() -> None:
    global _POOLS_LOCK, _CREDENTIALS_LOCK
    _POOLS_LOCK, _CREDENTIALS_LOCK = threading.Lock(), threading.Lock()
    _POOLS.clear()
    _CREDENTIALS.clear()
    for source in list(_LIVE_SOURCES):
        source._init_process_state()


class ByteSource:
    """Reads byte ranges of one object. Subclasses must stay picklable."""

    uri: str  # safe to print: never holds a secret

    def size(self) -> int:
        raise NotImplementedError

    def read(self, offset: int, length: int) -> bytes:
        raise NotImplementedError

    def read_ranges(self, ranges: list[ByteRange], *, max_gap: int = 0) -> list[bytes]:
        """Read many ranges with as few requests as merging allows."""
        out: list[bytes] = [b""] * len(ranges)
        for merged, members in merge_ranges(ranges, max_gap=max_gap):
            blob = memoryview(self.read(merged.offset, merged.length))
            for i in members:
                r = ranges[i]
                out[i] = blob[r.offset - merged.offset : r.end - merged.offset]
        return out

    def stats(self) -> TransferStats:
        counters = getattr(self, "_counters", None)
        return counters.snapshot() if counters is not None else TransferStats()


class LocalFile(ByteSource):
    """A local file read with pread; one descriptor per process, opened on first use.

    The file is pinned to what it was when first opened (device, inode, size, mtime,
    pickled along to workers): a read finds the file changed in place, truncated,
    replaced or deleted since, and fails naming it, rather than hand back bytes of
    another file. One stat per read: nothing next to a decode or a patch copy.
    """

    def __init__(self, path: str | os.PathLike[str], _pinned: tuple | None = None):
        self.path = str(path)
        self.uri = self.path
        self._fd: int | None = None
        self._pid = -1
        self._pinned = _pinned  # (dev, ino, size, mtime_ns) when first opened
        self._init_process_state()
        _LIVE_SOURCES.add(self)

    def _init_process_state(self) -> None:
        self._lock = threading.Lock()
        self._counters = _Counters()

    def __getstate__(self) -> dict:
        return {"path": self.path, "pinned": self._pinned}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state.get("pinned"))

    def __repr__(self) -> str:
        return f"LocalFile({self.path!r})"

    def _handle(self) -> int:
        pid = os.getpid()
        if self._fd is None or self._pid != pid:
            with self._lock:
                if self._fd is None or self._pid != pid:
                    fd = self._open()
                    try:
                        self._pin(os.fstat(fd))
                    except BaseException:
                        os.close(fd)
                        raise
                    self._fd, self._pid = fd, pid
        return self._fd

    def _open(self) -> int:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            raise InputError(self.path, "file not found") from None
        except IsADirectoryError:
            raise InputError(self.path, "is a directory, not a file") from None
        except PermissionError:
            raise InputError(self.path, "permission denied") from None
        except OSError as exc:
            raise InputError(self.path, f"cannot open it ({exc.strerror})") from None
        if os.path.isdir(self.path):  # os.open opens directories read-only
            os.close(fd)
            raise InputError(self.path, "is a directory, not a file")
        return fd

    def _pin(self, st: os.stat_result) -> None:
        """Record the file on first open; a later open (another process) must find it."""
        if self._pinned is None:
            self._pinned = _identity(st)
        else:
            self._check(st)

    def _check(self, st: os.stat_result | None = None) -> None:
        if st is None:
            try:
                st = os.stat(self.path)
            except OSError:
                raise InputError(self.path, "changed while streaming: the file is gone") from None
        now = _identity(st)
        if now == self._pinned:
            return
        dev, ino, size, _ = self._pinned
        if (now[0], now[1]) != (dev, ino):
            what = "replaced by another file"
        elif now[2] != size:
            what = f"{size} bytes when opened, now {now[2]}"
        else:
            what = "modified in place (mtime)"
        raise InputError(self.path, f"changed while streaming: {what}")

    def size(self) -> int:
        return os.fstat(self._handle()).st_size

    def read(self, offset: int, length: int) -> bytes:
        fd = self._handle()
        try:
            data = os.pread(fd, length, offset)
        except OSError as exc:
            raise InputError(self.path, f"read failed ({exc.strerror})") from None
        self._after_read(offset, length, len(data))
        return data

    def read_into(self, buf: Any, offset: int) -> None:
        """Fill the writable buffer `buf` with the file's bytes at `offset`, or raise."""
        fd = self._handle()
        view = memoryview(buf).cast("B")
        try:
            got = os.preadv(fd, [view], offset) if len(view) else 0
        except OSError as exc:
            raise InputError(self.path, f"read failed ({exc.strerror})") from None
        self._after_read(offset, len(view), got)

    def _after_read(self, offset: int, wanted: int, got: int) -> None:
        self._counters.add(requests=1, bytes=got)
        self._check()  # first: a short read of a file changed under us says so
        if got != wanted:
            raise InputError(
                self.path, f"truncated: wanted {wanted} bytes at offset {offset}, file gave {got}"
            )

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


# --------------------------------------------------------------------------- remote


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


class _Retryable(Exception):
    """One attempt failed in a way another attempt may fix."""


class _Fatal(Exception):
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


class _RemoteObject(ByteSource):
    """Ranged GETs with retries, deadlines and counters; subclasses say how to sign."""

    def __init__(self, options: RemoteOptions | None):
        self.options = options or RemoteOptions.from_env()
        self._size: int | None = None
        self._etag: str | None = None
        self._init_process_state()
        _LIVE_SOURCES.add(self)

    def _init_process_state(self) -> None:
        self._lock = threading.Lock()
        self._counters = _Counters()

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
        self._init_process_state()
        _LIVE_SOURCES.add(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"

    # -- public API
    def size(self) -> int:
        if self._size is None:
            self._size = self._fetch_size()
        return self._size

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
            except _Fatal as exc:
                fatal = str(exc)
            except _Retryable as exc:
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
            raise _Retryable("deadline reached before the request was sent")
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
            raise _Fatal(f"TLS error ({exc})") from None
        except (LocationParseError, ProxyError) as exc:
            raise _Fatal(f"bad URL or proxy ({exc})") from None
        except EmptyPoolError:
            raise _Retryable(f"no free connection within {budget:.1f} s") from None
        except (HTTPError, HTTPException, OSError) as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from None
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

    def _get_range(self, offset: int, length: int, deadline: float) -> tuple[bytes, int]:
        """One ranged GET: exactly `length` bytes at `offset`, and the object's size."""
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
                raise _Fatal(f"HTTP {resp.status} redirect without a Location")
            url = urljoin(url, location)
            resp = self._request("GET", url, headers, request_deadline)
        status = resp.status
        if status not in (200, 206):
            summary = _error_summary(self._discard(resp))
            self._raise_for_status(status, resp.headers, summary)
        try:
            total = self._check_range(resp, offset, length)
            data = self._read_body(resp, length, request_deadline)
        finally:
            resp.release_conn()
        got = resp.headers.get("ETag")
        if etag and got and got != etag:
            raise _Fatal(
                f"object changed while being read (ETag {etag} became {got}); "
                "open it again to read the new version"
            )
        self._learn(total, got)
        return data, total

    def _raise_for_status(self, status: int, headers: Any, summary: str) -> None:
        detail = f" ({summary})" if summary else ""
        if status in _RETRY_STATUS:
            raise _Retryable(f"HTTP {status}{detail}")
        special = self._explain(status, headers, summary)
        if special:
            raise _Fatal(special)
        if status == 404:
            raise _Fatal(f"HTTP 404: object not found (deleted or never written){detail}")
        if status in (401, 403):
            raise _Fatal(
                f"HTTP {status}: access denied{detail}; check the credentials (or SAS token) "
                "and that they grant read access to this object"
            )
        if status == 412:
            raise _Fatal(
                f"HTTP 412: object changed since it was opened (ETag {self._etag}){detail}; "
                "open it again to read the new version"
            )
        if status == 416:
            raise _Fatal(f"HTTP 416: range lies past the end of the object{detail}")
        if 300 <= status < 400:
            raise _Fatal(f"HTTP {status}: redirected to {redact_uri(headers.get('Location'))}")
        raise _Fatal(f"HTTP {status}{detail}")

    def _check_range(self, resp: Any, offset: int, length: int) -> int:
        """The object's size, once the response is known to hold exactly our range."""
        clen = resp.headers.get("Content-Length")
        if resp.status == 200:
            # The server ignored Range: only fine if the whole object is what we asked for.
            if offset == 0 and clen is not None and clen.isdigit() and int(clen) == length:
                return length
            self._discard(resp, keep_if_small=False)
            raise _Fatal(
                "the server ignored the Range header (HTTP 200 with the whole object"
                + (f" of {clen} bytes" if clen else "")
                + "); ocog reads COGs with byte-range requests, serve them from a server "
                "that supports them (S3, Azure Blob, nginx, ...)"
            )
        m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
        if not m:
            self._discard(resp, keep_if_small=False)
            raise _Retryable("HTTP 206 without a valid Content-Range")
        first, last, total_text = int(m.group(1)), int(m.group(2)), m.group(3)
        total = int(total_text) if total_text != "*" else None
        past_end = total is not None and last == total - 1 and last < offset + length - 1
        if first == offset and past_end:
            self._discard(resp, keep_if_small=False)
            raise _Fatal(
                f"range {offset}+{length} lies past the end of the object ({total} bytes)"
            )
        if first != offset or last != offset + length - 1:
            self._discard(resp, keep_if_small=False)
            raise _Retryable(
                f"Content-Range {first}-{last} does not match the requested "
                f"{offset}-{offset + length - 1}"
            )
        if clen is not None and (not clen.isdigit() or int(clen) != length):
            self._discard(resp, keep_if_small=False)
            raise _Retryable(f"Content-Length {clen} does not match the range length {length}")
        return total if total is not None else -1

    def _read_body(self, resp: Any, length: int, deadline: float) -> bytes:
        """Exactly `length` body bytes, or _Retryable; no socket wait outlives `deadline`."""
        from urllib3.exceptions import HTTPError

        chunks: list[bytes] = []
        got = 0
        sock = getattr(getattr(resp, "connection", None), "sock", None)
        try:
            while got < length:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _Retryable(f"body took longer than the time left ({got}/{length} bytes)")
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
            raise _Retryable(
                f"connection broke after {got}/{length} body bytes ({type(exc).__name__}: {exc})"
            ) from None
        except _Retryable:
            self._counters.add(bytes=got)
            resp.close()
            raise
        self._counters.add(bytes=got)
        if got != length:
            resp.close()
            raise _Retryable(f"truncated body: {got} of {length} bytes")
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


# --------------------------------------------------------------------------- S3


_CREDENTIALS: dict[tuple, Any] = {}
_CREDENTIALS_PID = -1
_CREDENTIALS_LOCK = threading.Lock()
# the chain's inputs: when one changes, the chain is walked again
_CREDENTIAL_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
)


def _aws_credentials(profile: str | None) -> Any:
    """botocore's credential chain (env, config/credentials files, SSO, IMDS, ...), walked
    once per process, profile and credential environment; None when it finds nothing
    (requests then go unsigned). Refreshable credentials refresh themselves."""
    global _CREDENTIALS_PID
    key = (profile, *(os.environ.get(v) for v in _CREDENTIAL_ENV))
    pid = os.getpid()
    with _CREDENTIALS_LOCK:
        if _CREDENTIALS_PID != pid:
            _CREDENTIALS.clear()
            _CREDENTIALS_PID = pid
        if key not in _CREDENTIALS:
            import botocore.session

            session = botocore.session.Session(profile=profile)
            _CREDENTIALS[key] = session.get_credentials()
        return _CREDENTIALS[key]


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "yes", "true", "on")


def s3_endpoint_from_env() -> str | None:
    """ocog's own OCOG_S3_ENDPOINT, else what the AWS SDKs would use: AWS_ENDPOINT_URL_S3,
    else AWS_ENDPOINT_URL (the same order as ocog_lib.remote.endpoint)."""
    for var in ("OCOG_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        if os.environ.get(var):
            return os.environ[var]
    return None


def _s3_region(profile: str | None) -> str:
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        return region
    import botocore.session

    return botocore.session.Session(profile=profile).get_config_variable("region") or "us-east-1"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of `s3://bucket/key`; InputError naming the URI otherwise."""
    parts = urlsplit(uri)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if parts.scheme != "s3" or not bucket or not key:
        raise InputError(uri, "not an S3 object URI (expected s3://bucket/key)")
    return bucket, key


class S3Object(_RemoteObject):
    """One object of any S3-compatible store, read with SigV4-signed ranged GETs.

    Endpoint: `endpoint_url`, else AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS
    (virtual-hosted). Region: `region`, else AWS_REGION / AWS_DEFAULT_REGION / the
    profile's, else us-east-1. Credentials: botocore's standard chain for `profile`,
    resolved in each process that reads and never stored in the source, printed or
    pickled; AWS_NO_SIGN_REQUEST=YES (or `anonymous=True`) reads public buckets.
    """

    def __init__(
        self,
        uri: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        anonymous: bool | None = None,
        options: RemoteOptions | None = None,
    ):
        self.bucket, self.key = parse_s3_uri(uri)
        self.uri = f"s3://{self.bucket}/{self.key}"
        self.endpoint_url = (endpoint_url or s3_endpoint_from_env() or "").rstrip("/") or None
        self.profile = profile or os.environ.get("AWS_PROFILE") or None
        self.region = region or _s3_region(self.profile)
        self.anonymous = _env_flag("AWS_NO_SIGN_REQUEST") if anonymous is None else anonymous
        self.ca_bundle = os.environ.get("AWS_CA_BUNDLE") or None
        if self.endpoint_url:
            ep = urlsplit(self.endpoint_url)
            if ep.scheme not in ("http", "https") or not ep.netloc:
                raise InputError(redact_uri(self.endpoint_url), "S3 endpoint must be http(s)://host")
        super().__init__(options)
        self._object_url = self._make_url()

    def _make_url(self) -> str:
        key = quote(self.key, safe="/~")
        if self.endpoint_url:  # custom endpoints (MinIO, moto, Ceph, R2, ...): path style
            return f"{self.endpoint_url}/{quote(self.bucket, safe='')}/{key}"
        if "." in self.bucket:  # dots break the TLS wildcard of virtual-hosted names
            return f"https://s3.{self.region}.amazonaws.com/{self.bucket}/{key}"
        return f"https://{self.bucket}.s3.{self.region}.amazonaws.com/{key}"

    @property
    def url(self) -> str:
        """The object's HTTP address (requests are signed in headers: no secret in it)."""
        return self._object_url

    def _url(self) -> str:
        return self._object_url

    def _ca_certs(self) -> str | None:
        return self.ca_bundle

    def _credentials(self) -> Any:
        if self.anonymous:
            return None
        creds = _aws_credentials(self.profile)
        return creds.get_frozen_credentials() if creds is not None else None

    def _headers(self, method: str, url: str, headers: dict[str, str]) -> dict[str, str]:
        frozen = self._credentials()
        if frozen is None:
            return headers
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method=method, url=url, headers=dict(headers))
        S3SigV4Auth(frozen, "s3", self.region).add_auth(request)
        return dict(request.headers.items())

    def _secrets(self) -> list[str]:
        try:
            frozen = self._credentials()
        except Exception:  # noqa: BLE001 - nothing to scrub if the chain itself fails
            return []
        if frozen is None:
            return []
        return [s for s in (frozen.secret_key, frozen.token, frozen.access_key) if s]

    def _explain(self, status: int, headers: Any, summary: str) -> str | None:
        region = headers.get("x-amz-bucket-region")
        if region and region != self.region and status in (301, 307, 400):
            return (
                f"HTTP {status}: bucket '{self.bucket}' is in region {region}, not "
                f"{self.region}; set AWS_REGION={region}"
            )
        if status == 404:
            what = {"NoSuchBucket": "bucket", "NoSuchKey": "object"}.get(
                summary.split(":")[0], "object (or its bucket)"
            )
            detail = f" ({summary})" if summary else ""
            return f"HTTP 404: {what} not found (deleted or never written){detail}"
        return None

    def _fetch_size(self) -> int:
        return self._with_retries("size", self._head)

    def _head(self, deadline: float) -> int:
        headers: dict[str, str] = {}
        if self._etag and not self._etag.startswith("W/"):
            headers["If-Match"] = self._etag
        resp = self._request("HEAD", self._object_url, headers, deadline)
        try:
            status = resp.status
            clen = resp.headers.get("Content-Length")
            etag = resp.headers.get("ETag")
            resp.drain_conn()
        finally:
            resp.release_conn()
        if status != 200:
            self._raise_for_status(status, resp.headers, "")
        if clen is None or not clen.isdigit():
            raise _Retryable("HEAD answered without a Content-Length")
        self._learn(int(clen), etag)
        return int(clen)


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


class HttpObject(_RemoteObject):
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


_S3_OPTS = {"endpoint_url", "region", "profile", "anonymous", "options"}
_HTTP_OPTS = {"sas_token", "ca_bundle", "options"}


def open_source(uri: str | os.PathLike[str], **opts: Any) -> ByteSource:
    """Pick the reader for a URI: local paths and file://, s3://, http(s)://.

    `opts` go to the remote source (`endpoint_url`, `region`, `profile`, `anonymous`
    for S3; `sas_token`, `ca_bundle` for HTTP; `options` for both) and are ignored for
    local files; options of the other schemes are ignored too, so one call site with one
    set of options serves every storage. Unknown names raise.
    """
    text = str(uri)
    unknown = set(opts) - _S3_OPTS - _HTTP_OPTS
    if unknown:
        raise InputError(redact_uri(text), f"unknown source option(s): {sorted(unknown)}")
    path = _local_path(text)
    if path is not None:
        if not os.path.exists(path):  # maybe a mistyped URL: shown redacted
            raise InputError(redact_uri(path), "file not found")
        if os.path.isdir(path):
            raise InputError(path, "is a directory, not a file")
        return LocalFile(path)
    parsed = urlsplit(text)
    if parsed.scheme == "s3":
        return S3Object(text, **{k: v for k, v in opts.items() if k in _S3_OPTS})
    if parsed.scheme in ("http", "https"):
        return HttpObject(text, **{k: v for k, v in opts.items() if k in _HTTP_OPTS})
    raise InputError(
        redact_uri(text),
        f"URI scheme '{parsed.scheme}' is not supported (local paths, file://, s3://, http(s)://)",
    )


def _local_path(text: str) -> str | None:
    """The local path `text` names, or None for a URL. A path is never parsed as a URL:
    `/data/x?sig=1.tif` is a file name (only `file://` URIs are decoded)."""
    scheme = text.split(":", 1)[0].lower() if "://" in text else ""
    if scheme == "file":
        return unquote(urlsplit(text).path)
    if scheme and scheme.isascii() and scheme.replace("+", "").replace("-", "").isalnum():
        return None
    return text


os.register_at_fork(after_in_child=_after_fork_in_child)

__all__ = [
    "ByteRange",
    "ByteSource",
    "HttpObject",
    "LocalFile",
    "RemoteOptions",
    "S3Object",
    "TransferStats",
    "merge_ranges",
    "open_source",
    "parse_s3_uri",
    "s3_endpoint_from_env",
    "sas_from_env",
    "with_sas",
]
