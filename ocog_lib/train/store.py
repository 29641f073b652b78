"""Where trained models go: a local folder, or an S3 bucket when the URI says s3://.

The URI comes from $OCOG_MODEL_STORE (default: <data_dir>/models). S3 uses boto3 with
the endpoint of $AWS_ENDPOINT_URL_S3 / $AWS_ENDPOINT_URL (any S3-compatible store).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ocog_lib.atomic import atomic_path
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings


class ModelStore(Protocol):
    def save(self, local: Path, key: str) -> str:
        """Store the file at `local` under `key`; return its URI."""

    def fetch(self, key: str, dst: Path) -> Path:
        """Copy the model stored under `key` to `dst`."""


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise InputError(f"model key {key!r}", "must be a relative path without '..'")
    return key


@dataclass(frozen=True)
class LocalModelStore:
    root: Path

    def save(self, local: Path, key: str) -> str:
        dst = Path(self.root) / _check_key(key)
        with atomic_path(dst) as tmp:
            shutil.copyfile(local, tmp)
        return str(dst)

    def fetch(self, key: str, dst: Path) -> Path:
        src = Path(self.root) / _check_key(key)
        if not src.is_file():
            raise InputError(src, "no model stored under this key")
        with atomic_path(Path(dst)) as tmp:
            shutil.copyfile(src, tmp)
        return Path(dst)


@dataclass(frozen=True)
class S3ModelStore:
    bucket: str
    prefix: str = ""

    def _client(self):
        import boto3

        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        return boto3.client("s3", endpoint_url=endpoint)

    def _key(self, key: str) -> str:
        return "/".join(p for p in (self.prefix.strip("/"), _check_key(key)) if p)

    def save(self, local: Path, key: str) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        full = self._key(key)
        try:  # an S3 object appears whole or not at all: no temp name needed
            self._client().upload_file(str(local), self.bucket, full)
        except (BotoCoreError, ClientError) as exc:
            raise InputError(f"s3://{self.bucket}/{full}", f"upload failed ({exc})") from exc
        return f"s3://{self.bucket}/{full}"

    def fetch(self, key: str, dst: Path) -> Path:
        from botocore.exceptions import BotoCoreError, ClientError

        full = self._key(key)
        with atomic_path(Path(dst)) as tmp:
            try:
                self._client().download_file(self.bucket, full, str(tmp))
            except (BotoCoreError, ClientError) as exc:
                raise InputError(f"s3://{self.bucket}/{full}", f"download failed ({exc})") from exc
        return Path(dst)


def model_store(uri: str | Path | None = None, settings: Settings | None = None) -> ModelStore:
    """The store a URI names; None reads $OCOG_MODEL_STORE, else <data_dir>/models."""
    uri = str(uri) if uri else os.environ.get("OCOG_MODEL_STORE", "")
    if not uri:
        return LocalModelStore((settings or Settings.from_env()).data_dir / "models")
    if uri.startswith("s3://"):
        bucket, _, prefix = uri[5:].partition("/")
        if not bucket:
            raise InputError(f"model store {uri!r}", "no bucket in the s3:// URI")
        return S3ModelStore(bucket, prefix)
    if "://" in uri:
        raise InputError(f"model store {uri!r}", "use a folder path or an s3:// URI")
    return LocalModelStore(Path(uri).resolve())
