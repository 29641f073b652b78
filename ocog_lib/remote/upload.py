"""Put local files (a variant folder of COGs) into S3, once.

Idempotent: each object carries the sha256 of its bytes in its metadata
(`x-amz-meta-sha256`); an object whose size and checksum already match is skipped after
one HEAD, so re-running a materialization costs a hash, not an upload. Large files go
up as multipart uploads with parts sent by parallel threads (boto3's s3transfer).
Atomic from a reader's view: S3 shows an object only once its PUT or its multipart
completion succeeds; a failed multipart upload is aborted. (A process killed mid-way
can leave an unfinished multipart upload behind: invisible to readers, but billed by
real stores until a lifecycle rule removes it.) In a folder, manifest.json goes last,
so a reader that finds the manifest finds every file it names.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocog_lib.errors import InputError
from ocog_lib.secrets import redact_text
from ocog_lib.storage import parse_s3_uri

CHECKSUM_KEY = "sha256"  # user metadata key: sent as x-amz-meta-sha256
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class UploadConfig:
    """Multipart above `multipart_threshold`, in parts of `part_size` (S3 wants >= 5 MiB
    and <= 10,000 parts; s3transfer grows parts for huge files), `threads` parts at once;
    `files_in_parallel` files at once in `upload_dir`."""

    multipart_threshold: int = 64 << 20
    part_size: int = 32 << 20
    threads: int = 8
    files_in_parallel: int = 4

    def __post_init__(self) -> None:
        if self.part_size < 5 << 20:
            raise InputError(self, "part_size must be at least 5 MiB (S3's minimum part)")
        if self.threads < 1 or self.files_in_parallel < 1:
            raise InputError(self, "threads and files_in_parallel must be >= 1")


@dataclass(frozen=True)
class UploadResult:
    uri: str
    size: int
    sha256: str
    uploaded: bool  # False: an identical object (size and sha256) was already there
    parts: int  # parts sent: 1 for a single PUT, 0 when skipped
    seconds: float


def s3_client(client_opts: dict[str, Any] | None = None, max_connections: int = 16) -> Any:
    """A boto3 S3 client; `client_opts` go to boto3.client (endpoint_url, region_name,
    credentials...). Without them boto3 reads the standard environment, including
    AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL."""
    import boto3
    from botocore.config import Config

    opts = dict(client_opts or {})
    config = Config(max_pool_connections=max_connections, retries={"mode": "standard"})
    if "config" in opts:
        config = config.merge(opts.pop("config"))
    # a session of its own: boto3's default one keeps the credentials it first found
    return boto3.session.Session().client("s3", config=config, **opts)


def file_sha256(path: str | os.PathLike[str], chunk: int = 8 << 20) -> str:
    """Hex sha256 of a file, read in large chunks (hashlib releases the GIL on them)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _client_error(uri: str, exc: Exception) -> InputError:
    """InputError naming the object and the store's error code, never a credential."""
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {}) if isinstance(response, dict) else {}
    code, message = error.get("Code"), error.get("Message")
    if not code:  # s3transfer's S3UploadFailedError keeps only the text of the ClientError
        pattern = r"An error occurred \((\w+)\) when calling the \w+ operation: (.*)"
        m = re.search(pattern, str(exc))
        code, message = (m.group(1), m.group(2)) if m else (None, None)
    if code in ("NoSuchBucket",):
        cause = "bucket does not exist (create it first)"
    elif code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
        cause = f"access denied ({code}); check the credentials"
    elif code:
        cause = f"{code}: {message}" if message else str(code)
    else:
        cause = f"{type(exc).__name__}: {exc}"
    return InputError(uri, redact_text(f"upload failed: {cause}"))


def _head(client: Any, bucket: str, key: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        return client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 404 or exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
            return None
        raise


def upload_file(
    path: str | os.PathLike[str],
    s3_uri: str,
    *,
    client_opts: dict[str, Any] | None = None,
    config: UploadConfig | None = None,
    client: Any = None,
) -> UploadResult:
    """Upload one file to `s3://bucket/key` unless an identical object is there already."""
    from boto3.exceptions import S3UploadFailedError
    from boto3.s3.transfer import TransferConfig
    from botocore.exceptions import BotoCoreError, ClientError
    from s3transfer.utils import ChunksizeAdjuster

    start = time.monotonic()
    config = config or UploadConfig()
    bucket, key = parse_s3_uri(s3_uri)
    uri = f"s3://{bucket}/{key}"
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found (or not a regular file)")
    size = path.stat().st_size
    digest = file_sha256(path)
    client = client or s3_client(client_opts, max_connections=max(10, config.threads * 2))
    try:
        head = _head(client, bucket, key)
        if (
            head is not None
            and head.get("ContentLength") == size
            and head.get("Metadata", {}).get(CHECKSUM_KEY) == digest
        ):
            return UploadResult(uri, size, digest, False, 0, time.monotonic() - start)
        multipart = size >= config.multipart_threshold
        part = ChunksizeAdjuster().adjust_chunksize(config.part_size, size)
        transfer = TransferConfig(
            multipart_threshold=config.multipart_threshold,
            multipart_chunksize=part,
            max_concurrency=config.threads,
            use_threads=config.threads > 1,
        )
        client.upload_file(
            str(path),
            bucket,
            key,
            ExtraArgs={"Metadata": {CHECKSUM_KEY: digest}},
            Config=transfer,
        )
        after = _head(client, bucket, key)
    except (ClientError, BotoCoreError) as exc:
        raise _client_error(uri, exc) from None
    except S3UploadFailedError as exc:
        raise _client_error(uri, exc) from None
    if (
        after is None
        or after.get("ContentLength") != size
        or after.get("Metadata", {}).get(CHECKSUM_KEY) != digest
    ):
        raise InputError(uri, "upload did not stick: size or checksum differ after upload")
    parts = -(-size // part) if multipart else 1
    return UploadResult(uri, size, digest, True, parts, time.monotonic() - start)


def upload_dir(
    folder: str | os.PathLike[str],
    s3_prefix: str,
    *,
    client_opts: dict[str, Any] | None = None,
    config: UploadConfig | None = None,
    include: Callable[[Path], bool] | None = None,
) -> list[UploadResult]:
    """Upload every file under `folder` to `s3_prefix/<relative path>`, manifest.json last.

    Hidden files (names starting with '.', e.g. unfinished atomic writes) are skipped,
    as is anything `include` rejects. Results come in upload order.
    """
    config = config or UploadConfig()
    root = Path(folder)
    if not root.is_dir():
        raise InputError(root, "not a folder")
    prefix = s3_prefix.rstrip("/")
    parse_s3_uri(prefix + "/x")  # validate the bucket part early
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
        and (include is None or include(p))
    )
    if not files:
        raise InputError(root, "no files to upload")
    manifests = [p for p in files if p.name == MANIFEST_NAME]
    others = [p for p in files if p.name != MANIFEST_NAME]
    client = s3_client(client_opts, max_connections=config.threads * config.files_in_parallel)

    def one(p: Path) -> UploadResult:
        rel = p.relative_to(root).as_posix()
        return upload_file(p, f"{prefix}/{rel}", config=config, client=client)

    with ThreadPoolExecutor(config.files_in_parallel, thread_name_prefix="ocog-upload") as pool:
        results = list(pool.map(one, others))
    return results + [one(p) for p in manifests]
