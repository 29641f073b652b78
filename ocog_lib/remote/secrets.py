"""Secrets out of URIs and messages.

Every URI ocog prints, logs, raises or stores passes through `redact_uri`, and every
message that may quote one (a urllib3 error, an S3 or Azure error body) through
`redact_text`: SAS signatures, presigned-URL credentials and passwords never leave the
process in clear text. Keys are kept so a reader still sees which parameters were sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote_plus, urlsplit, urlunsplit

MASK = "***"

# Query parameter names whose values are secrets: Azure SAS `sig`, S3/GCS presigned
# credentials and signatures, OAuth tokens, API keys, passwords.
_SECRET_PARAM = re.compile(
    r"^(sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token"
    r"|x-goog-signature|x-goog-credential|awsaccesskeyid|token|access_token|sas|sas_token"
    r"|key|api_?key|apikey|password|passwd|secret|client_secret)$",
    re.IGNORECASE,
)
# The same parameters inside free text (error messages that quote a URL).
_SECRET_QUERY_IN_TEXT = re.compile(
    r"(?P<k>[?&](?:sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token"
    r"|x-goog-signature|x-goog-credential|awsaccesskeyid|token|access_token|sas|sas_token"
    r"|key|api_?key|apikey|password|passwd|secret|client_secret)=)[^&#\s\"'<>]*",
    re.IGNORECASE,
)
_URL_PASSWORD = re.compile(r"(?P<k>[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+(?=@)", re.IGNORECASE)
# SigV4 Authorization header parts, should a message ever quote one.
_AUTH_HEADER = re.compile(r"(?P<k>(?:Credential|Signature)=)[^\s,\"']+", re.IGNORECASE)


def redact_uri(uri: object) -> str:
    """The URI with secret query values and any password replaced by ***."""
    text = str(uri)
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
