"""S3 objects: SigV4-signed ranged GETs against any S3-compatible endpoint.

Requests are signed by botocore with its standard credential chain, resolved in the
process that reads; the retry and deadline machinery is `ocog_lib.storage.http`'s.
"""

from __future__ import annotations

import os
import threading
from typing import Any
from urllib.parse import quote, urlsplit

from ocog_lib.errors import InputError
from ocog_lib.secrets import redact_uri
from ocog_lib.storage.http import RemoteObject, RemoteOptions, RetryableFailure

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


class S3Object(RemoteObject):
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
            raise RetryableFailure("HEAD answered without a Content-Length")
        self._learn(int(clen), etag)
        return int(clen)


def _after_fork_in_child() -> None:
    global _CREDENTIALS_LOCK
    _CREDENTIALS_LOCK = threading.Lock()
    _CREDENTIALS.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
