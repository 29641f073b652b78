"""Content-addressed tile keys: what the source files are, plus every argument of a tile.

A local file is named by path, size and mtime (nanoseconds): rewriting one changes the
key, so no stale tile is served from the cache or confirmed by a 304. A remote object is
named by its URI, size and ETag, looked up once a minute (a rewrite within that minute is
not seen; reads of an object that changed under an open handle fail on If-Match).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterable

from ocog_lib.serve.errors import ApiError

REMOTE_TTL_S = 60.0
_remote: dict[str, tuple[float, str]] = {}
_remote_lock = threading.Lock()


def source_identity(uri: str) -> str:
    """One file's identity; a file that is gone is the upstream's failure (502)."""
    if "://" not in uri or uri.startswith("file://"):
        path = uri.removeprefix("file://")
        try:
            st = os.stat(path)
        except OSError as exc:
            raise ApiError(uri, f"source file cannot be read: {exc.strerror or exc}",
                           status=502, error="upstream read failed") from None  # fmt: skip
        return f"{path}:{st.st_size}:{st.st_mtime_ns}"
    return _remote_identity(uri)


def _remote_identity(uri: str) -> str:
    now = time.monotonic()
    with _remote_lock:
        hit = _remote.get(uri)
    if hit is not None and now - hit[0] < REMOTE_TTL_S:
        return hit[1]
    from ocog_lib.storage.uri import open_source

    try:
        source = open_source(uri)
        ident = f"{uri}:{source.size()}:{source.version() or ''}"
    except Exception as exc:  # noqa: BLE001 - any failure of the upstream is a 502
        raise ApiError(uri, f"source object cannot be read: {exc}", status=502,
                       error="upstream read failed") from None  # fmt: skip
    with _remote_lock:
        _remote[uri] = (now, ident)
    return ident


def content_key(uris: Iterable[str], args: dict) -> str:
    """The ETag: sha256 over the sources' identities and the arguments, as hex."""
    payload = {"sources": sorted(source_identity(u) for u in set(uris)), "args": args}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]
