"""URIs to byte-range readers: local paths and file://, s3://, http(s)://."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote, urlsplit

from ocog_lib.errors import InputError
from ocog_lib.secrets import redact_uri
from ocog_lib.storage.http import HttpObject
from ocog_lib.storage.local import LocalFile
from ocog_lib.storage.s3 import S3Object
from ocog_lib.storage.source import ByteSource

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
