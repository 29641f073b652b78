"""Secrets out of URIs, messages and stored values: the one redaction engine.

Every URI ocog prints, logs, raises or stores passes through `redact_uri`, and every
message that may quote one (a urllib3 error, an S3 or Azure error body) through
`redact_text`: SAS signatures, presigned-URL credentials and passwords never leave the
process in clear text. Keys are kept so a reader still sees which parameters were sent.
Configs and rows bound for the results file pass through `redact_value`.
Log records of the libraries that see raw URLs (rasterio/GDAL, urllib3) are redacted as
they are made (`install_log_redaction`, done on import of this module).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

MASK = "***"

# Query parameter names whose values are secrets: Azure SAS `sig`, S3/GCS presigned
# credentials and signatures, OAuth tokens, API keys, passwords.
_SECRET_NAMES = (
    r"sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token"
    r"|x-goog-signature|x-goog-credential|awsaccesskeyid|token|access_token|sas|sas_token"
    r"|key|api_?key|apikey|password|passwd|secret|client_secret"
)
_SECRET_PARAM = re.compile(rf"^({_SECRET_NAMES})$", re.IGNORECASE)
# The same parameters inside free text (error messages that quote a URL).
_SECRET_QUERY_IN_TEXT = re.compile(
    rf"(?P<k>[?&](?:{_SECRET_NAMES})=)[^&#\s\"'<>]*", re.IGNORECASE
)
_URL_PASSWORD = re.compile(r"(?P<k>[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+(?=@)", re.IGNORECASE)
_URL_PASSWORD_VALUE = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:([^@\s/]+)@", re.IGNORECASE)
# SigV4 Authorization header parts, should a message ever quote one.
_AUTH_HEADER = re.compile(r"(?P<k>(?:Credential|Signature)=)[^\s,\"']+", re.IGNORECASE)


def redact_uri(uri: object) -> str:
    """The URI with secret query values and any password replaced by ***."""
    text = str(uri)
    if any(c.isspace() for c in text):  # free text (an error message), not one URI
        return redact_text(text)
    try:
        parts = urlsplit(text)
    except ValueError:
        return redact_text(text)
    if not parts.scheme or not (parts.query or "@" in parts.netloc):
        return redact_text(text) if "?" in text or "@" in text else text
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":" + MASK
        netloc = f"{userinfo}@{host}"
    query = "&".join(_mask_param(p) for p in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _mask_param(param: str) -> str:
    """`k=v` with v masked when k names a secret; the rest kept exactly as written."""
    key, eq, value = param.partition("=")
    if eq and value and _SECRET_PARAM.match(unquote_plus(key)):
        return f"{key}={MASK}"
    return param


def redact_text(text: object, secrets: Iterable[str | None] = ()) -> str:
    """Free text with URL secrets masked, and each literal in `secrets` (>= 4 chars) too."""
    out = str(text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            out = out.replace(secret, MASK)
    out = _SECRET_QUERY_IN_TEXT.sub(lambda m: m.group("k") + MASK, out)
    out = _URL_PASSWORD.sub(lambda m: m.group("k") + MASK, out)
    return _AUTH_HEADER.sub(lambda m: m.group("k") + MASK, out)


# Key names (of a config or a row) whose values are secrets, whatever the value looks like.
_SECRET_KEY = re.compile(
    r"secret|passw|token|credential|(^|[_-])sas($|[_-])|api_?key|private_?key|access_?key"
    r"|session_?key|authorization|signature",
    re.IGNORECASE,
)


def redact_value(value: Any) -> Any:
    """A copy of a config (dicts, lists, strings) with secrets masked: the value of every key
    that names a secret (unless empty), and URL secrets in every string."""
    if isinstance(value, dict):
        return {
            k: (MASK if _SECRET_KEY.search(str(k)) and v not in (None, "") else redact_value(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def uri_secrets(uri: object) -> list[str]:
    """The literal secret values in a URI (query values, password), raw and %-decoded: what
    `redact_text` must also scrub from messages that quote the URI in another form."""
    text = str(uri)
    found = re.findall(r"[?&](?:" + _SECRET_NAMES + r")=([^&#\s]+)", text, re.IGNORECASE)
    password = _URL_PASSWORD_VALUE.search(text)
    if password:
        found.append(password.group(1))
    return sorted({v for raw in found for v in (raw, unquote_plus(raw)) if len(v) >= 4})


def redact_exception(exc: BaseException, secrets: Iterable[str | None] = ()) -> str:
    """One line naming what went wrong in `exc` and the errors chained to it (GDAL's real
    cause is often only in the chain), every URL secret masked."""
    parts: list[str] = []
    seen: list[BaseException] = []
    while exc is not None and exc not in seen and len(seen) < 8:
        seen.append(exc)
        text = " ".join(str(exc).split())
        if text and "see previous exception" not in text.lower() and text not in parts:
            parts.append(text)
        exc = exc.__cause__ or exc.__context__
    if not parts:
        parts = [type(seen[0]).__name__]
    return redact_text("; ".join(dict.fromkeys([parts[0], parts[-1]])), secrets)


# Loggers whose records may quote a raw URL or a signature: GDAL's messages (through
# rasterio), urllib3's request lines, botocore's signed requests. Records are redacted
# where they are made, so every handler (a file, pytest's caplog, Dagster's) only ever
# sees the redacted text.
_REDACTED_LOGGERS = ("rasterio", "urllib3", "botocore")
_install_lock = threading.Lock()
_installed = False


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """The record with its message (and any formatted traceback) redacted in place."""
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a broken record is logging's problem
        return record
    record.msg, record.args = redact_text(message), ()
    if record.exc_info and not record.exc_text:
        record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
    return record


class RedactingFilter(logging.Filter):
    """A filter for handlers or loggers outside `_REDACTED_LOGGERS`."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def install_log_redaction() -> None:
    """Redact every record of `_REDACTED_LOGGERS` (and their children) when it is made.

    A record factory, not a logger filter: filters on a logger do not see its children's
    records (rasterio logs under rasterio._env, rasterio._err, ...). Idempotent."""
    global _installed
    with _install_lock:
        if _installed:
            return
        make = logging.getLogRecordFactory()

        def factory(name, *args, **kwargs):
            record = make(name, *args, **kwargs)
            if isinstance(name, str) and name.split(".", 1)[0] in _REDACTED_LOGGERS:
                redact_record(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed = True


install_log_redaction()
