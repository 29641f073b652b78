"""The embedded S3 endpoint: moto's server mode on 127.0.0.1, in a child process we own.

Why moto: it is pure PyPI (no docker, no binary to download), starts in well under a
second, and speaks the S3 the engine and the uploads use: ranged GET with Content-Range
and If-Match, HEAD, multipart upload, user metadata, and (after `enable_auth()`) real
SigV4 signature checks against IAM keys, so a wrong credential gets a real 403.
It runs as a separate process started here and stopped by PID, so it can always be
killed cleanly and never shares the GIL with the loader it serves.

Limits (say them next to any number measured through it):
- state lives in memory (objects over ~5 MB spill to temporary files) and is gone
  after `stop()`: re-upload after a restart (uploads skip nothing then);
- one process, GIL-bound, and werkzeug closes the connection after every response
  (no keep-alive): on a 2-core machine about 500 ranged GETs/s and 250 MB/s in all,
  so it can stand in for a link of ~100 MB/s, not 1 GB/s;
- stock moto copies the whole object for every ranged GET (a 64 MB object serves ~30
  GETs/s); the child replaces that path with a read of just the requested bytes
  (`_patch_ranged_get`, checked against stock semantics by the tests; off with
  `fast_ranges=False`).
Real deployments point AWS_ENDPOINT_URL_S3 at a real store (AWS, MinIO, Ceph, R2).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ocog_lib.env import scoped_env
from ocog_lib.errors import InputError
from ocog_lib.remote.child import ChildServer

DUMMY_ACCESS_KEY = "ocog-embedded-key"
DUMMY_SECRET_KEY = "ocog-embedded-secret"
REGION = "us-east-1"
# environment variables that would override the credentials we hand our clients
_AWS_CREDENTIAL_VARS = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE")


class EmbeddedS3(ChildServer):
    """An S3 endpoint on a free loopback port for as long as the object (or `with`) lives."""

    LABEL = "EmbeddedS3"
    CHILD = "EmbeddedS3 (moto server)"
    ANNOUNCEMENT = r"PORT (\d+) ranges=(\w+)"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        startup_timeout_s: float = 30.0,
        fast_ranges: bool = True,
    ):
        super().__init__(host, startup_timeout_s)
        self.requested_port = port
        self.fast_ranges = fast_ranges
        self.fast_ranges_active = False  # the child patched moto's ranged GET
        self.access_key = DUMMY_ACCESS_KEY
        self.secret_key = DUMMY_SECRET_KEY
        self.region = REGION
        self._log: Path | None = None

    # -- lifecycle (start, stop, with: ChildServer)
    @property
    def endpoint_url(self) -> str:
        return self.url

    def _spawn(self) -> subprocess.Popen:
        fd, log_name = tempfile.mkstemp(prefix="ocog-s3-", suffix=".log")
        self._log = Path(log_name)
        env = dict(os.environ)
        for var in _AWS_CREDENTIAL_VARS:
            env.pop(var, None)
        env.update(
            AWS_ACCESS_KEY_ID=DUMMY_ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=DUMMY_SECRET_KEY,
            AWS_DEFAULT_REGION=REGION,
        )
        cmd = [
            sys.executable, "-m", "ocog_lib.remote.s3server",
            "--host", self.host, "--port", str(self.requested_port),
            "--parent-pid", str(os.getpid()),
        ]  # fmt: skip
        if not self.fast_ranges:
            cmd.append("--stock-ranges")
        with os.fdopen(fd, "wb") as log:
            return self._popen(cmd, env=env, stderr=log)

    def _started(self, announcement: re.Match) -> None:
        self.fast_ranges_active = announcement.group(2) == "fast"
        self._wait_ready()

    def _wait_ready(self) -> None:
        import urllib3

        deadline = time.monotonic() + self.startup_timeout_s
        http = urllib3.PoolManager(retries=False, timeout=2.0)
        while True:
            try:
                if http.request("GET", f"{self.endpoint_url}/moto-api/").status == 200:
                    return
            except urllib3.exceptions.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise InputError("EmbeddedS3", f"moto server not ready: {self._log_tail()}")
            time.sleep(0.05)

    def _why_exited(self) -> str:
        return self._log_tail()

    def _log_tail(self) -> str:
        try:
            return (self._log.read_text(errors="replace")[-800:] if self._log else "").strip()
        except OSError:
            return ""

    def _stopped(self) -> None:
        """The child's state is gone with it; so is its log."""
        if self._log is not None:
            self._log.unlink(missing_ok=True)
            self._log = None

    # -- clients
    def env(self, endpoint_url: str | None = None) -> dict[str, str]:
        """Environment that points S3 clients (ours, boto3, GDAL's /vsis3/) here, or at
        `endpoint_url` (e.g. a WAN shaper in front of this server)."""
        url = endpoint_url or self.endpoint_url
        parts = url.split("://", 1)[-1]
        return {
            "AWS_ENDPOINT_URL_S3": url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            # GDAL's /vsis3/ (the rasterio fallback path) reads these instead
            "AWS_S3_ENDPOINT": parts,
            "AWS_HTTPS": "YES" if url.startswith("https") else "NO",
            "AWS_VIRTUAL_HOSTING": "FALSE",
        }

    @contextlib.contextmanager
    def activated(self, endpoint_url: str | None = None) -> Iterator[dict[str, str]]:
        """Set `env()` in os.environ for the duration (process-wide: not for threads that
        expect their own credentials), restoring what was there before."""
        env = self.env(endpoint_url)
        with scoped_env({**dict.fromkeys(_AWS_CREDENTIAL_VARS), **env}):
            yield env

    def client(self, service: str = "s3", endpoint_url: str | None = None) -> Any:
        """A boto3 client for this server with its credentials (never from the ambient env)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            service,
            endpoint_url=endpoint_url or self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(
                signature_version="s3v4", retries={"max_attempts": 2, "mode": "standard"}
            ),
        )

    def ensure_bucket(self, name: str) -> None:
        """Create the bucket unless it exists (ours already or not)."""
        from botocore.exceptions import ClientError

        s3 = self.client()
        try:
            s3.create_bucket(Bucket=name)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise InputError(f"s3://{name}", f"cannot create bucket ({code})") from None

    def enable_auth(self, user: str = "ocog") -> None:
        """Turn on moto's SigV4 + IAM checks with a fresh key (full S3 access): requests
        signed with any other key, or not signed, get 403 from then on. Clients made
        after this (`env()`, `client()`) carry the new key. moto (5.x) then answers
        presigned URLs with HTTP 500: leave auth off where presigned URLs are used."""
        iam = self.client("iam")
        iam.create_user(UserName=user)
        iam.put_user_policy(
            UserName=user,
            PolicyName="s3-all",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
                }
            ),
        )
        key = iam.create_access_key(UserName=user)["AccessKey"]
        import urllib3

        r = urllib3.PoolManager(retries=False).request(
            "POST", f"{self.endpoint_url}/moto-api/reset-auth", body=b"0"
        )
        if r.status != 200:
            raise InputError("EmbeddedS3", f"cannot enable auth (HTTP {r.status})")
        self.access_key, self.secret_key = key["AccessKeyId"], key["SecretAccessKey"]


# ------------------------------------------------------------------ the child process


def _patch_ranged_get() -> bool:
    """Serve `Range: bytes=a-b` GETs by reading only those bytes of the stored object.

    Stock moto materializes the whole object and slices it per request. Here the stock
    handler still runs (auth, lookup, If-Match, headers) but with the body deferred;
    the requested bytes are then read from the key's buffer under its lock. Anything
    else (suffix or multi ranges, a start past the end, partNumber) goes the stock way.
    Returns False (stock behaviour) if moto's internals are not where expected.
    """
    try:
        from moto.s3 import models, responses

        value_prop = models.FakeKey.__dict__["value"]
        stock_get = responses.S3Response.get_object
    except (ImportError, KeyError, AttributeError):
        return False
    local = threading.local()

    def value(self: Any) -> bytes:
        if getattr(local, "defer", False):
            local.key = self
            return b""
        return value_prop.fget(self)

    def get_object(self: Any) -> Any:
        m = re.fullmatch(r"bytes=(\d+)-(\d+)", (self.headers.get("Range") or "").strip())
        if m is None or self.querystring.get("partNumber"):
            return stock_get(self)
        local.defer, local.key = True, None
        try:
            status, headers, body = stock_get(self)
        finally:
            local.defer = False
        key, local.key = local.key, None
        begin, end = int(m.group(1)), int(m.group(2))
        if status != 200 or key is None or begin > end or begin >= key.size:
            return stock_get(self) if status == 200 else (status, headers, body)
        end = min(end, key.size - 1)
        with key.lock:
            key._value_buffer.seek(begin)
            data = key._value_buffer.read(end - begin + 1)
        for name in [h for h in headers if h.lower().startswith("x-amz-checksum-")]:
            del headers[name]  # stock moto drops these for ranges too
        for name in [h for h in headers if h.lower() in ("content-length", "content-range")]:
            del headers[name]
        headers["content-range"] = f"bytes {begin}-{end}/{key.size}"
        headers["content-length"] = str(len(data))
        return 206, headers, data

    models.FakeKey.value = property(value, value_prop.fset)
    responses.S3Response.get_object = get_object
    return True


def _serve(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="ocog's embedded S3 endpoint (moto)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--parent-pid", type=int, default=0)
    parser.add_argument("--stock-ranges", action="store_true")
    args = parser.parse_args(argv)

    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    fast = not args.stock_ranges and _patch_ranged_get()
    server = ThreadedMotoServer(ip_address=args.host, port=args.port, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    print(f"PORT {port} ranges={'fast' if fast else 'stock'}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # an orphan (parent killed hard) stops on its own instead of holding the port
    while not stop.wait(1.0):
        if args.parent_pid and os.getppid() != args.parent_pid:
            break
    server.stop()


if __name__ == "__main__":
    _serve()
