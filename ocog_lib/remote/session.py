"""One bucket and one key layout for a dataset's variants, and one embedded endpoint.

Every consumer of a variant in object storage goes through here: the `remote_variants`
asset uploads, and remote search, remote training and `bench compare --remote` read, the
same objects:

    s3://<bucket>/variants/<dataset>/<variant>/<path inside the variant folder>
    s3://<bucket>/stacks/<stack>-<folder id>/<path inside the stack folder>   (time stacks)
    s3://<bucket>/files/<folder name>-<folder id>/<file name>   (`bench files`' small COGs)

(bucket: $OCOG_S3_BUCKET, default "ocog"). A reader uploads what is missing first; an
object whose size and sha256 match is skipped, so after `remote_variants` ran that costs
a hash per file.

The endpoint is the configured one (see `endpoint`), else the long-lived embedded server
(`ocog s3 serve`, the Dagster ObjectStore) when it runs; only when neither exists does a
session start a server of its own, stopped when the session ends, so a one-off benchmark
leaves no process behind.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocog_lib.remote.endpoint import (
    Endpoint,
    bucket_from_env,
    configured_endpoint,
    embedded_status,
    resolve_endpoint,
)
from ocog_lib.remote.s3server import REGION, EmbeddedS3
from ocog_lib.settings import Settings

VARIANTS_PREFIX = "variants"
STACKS_PREFIX = "stacks"
FILES_PREFIX = "files"


def variant_key(dataset: str, variant: str, relpath: str = "") -> str:
    """The key of a variant's file (or, with no relpath, its folder ending in "/")."""
    return f"{VARIANTS_PREFIX}/{dataset}/{variant}/{relpath.lstrip('/')}"


def variant_uri(bucket: str, dataset: str, variant: str, relpath: str = "") -> str:
    return f"s3://{bucket}/{variant_key(dataset, variant, relpath)}"


def stack_key(stack: str, folder: str | Path, relpath: str = "") -> str:
    """The key of a time stack's file: the stack's name and an id of its local folder (two
    folders holding stacks of one name, e.g. built at two sizes, never share objects)."""
    folder_id = hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:8]
    return f"{STACKS_PREFIX}/{stack}-{folder_id}/{relpath.lstrip('/')}"


def files_key(folder: str | Path, name: str = "") -> str:
    """The key of a file of a flat local folder (`bench files`' generated COGs), by the
    folder's name and an id of its path, as a stack's."""
    folder = Path(folder).resolve()
    folder_id = hashlib.sha256(str(folder).encode()).hexdigest()[:8]
    return f"{FILES_PREFIX}/{folder.name}-{folder_id}/{name.lstrip('/')}"


@dataclass(frozen=True)
class RemoteSession:
    """An endpoint with a client, the bucket created; `own_server` when this session
    started the server itself (it stops with the session)."""

    endpoint: Endpoint
    client: Any
    env_for_front: Any  # (front url | None) -> environment for readers and GDAL
    own_server: bool

    @property
    def bucket(self) -> str:
        return self.endpoint.bucket

    def env(self, front: str | None = None) -> dict[str, str]:
        """Variables pointing readers at the endpoint, or at `front` (a WAN shaper)."""
        return self.env_for_front(front)

    def variant_uri(self, dataset: str, variant: str, relpath: str = "") -> str:
        return variant_uri(self.bucket, dataset, variant, relpath)

    def upload_variant_files(
        self, dataset: str, variant: str, folder: Path, paths: list[str]
    ) -> list[str]:
        """The s3:// URIs of `paths` (files inside the variant `folder`), uploading any
        that the bucket lacks or holds with other content."""
        def uri_of(path: str) -> str:
            rel = Path(path).resolve().relative_to(Path(folder).resolve()).as_posix()
            return self.variant_uri(dataset, variant, rel)

        return self._upload(paths, uri_of)

    def upload_stack_files(self, stack: str, folder: Path, paths: list[str]) -> list[str]:
        """The s3:// URIs of a time stack's files (`paths`: inside its `folder`, or
        absolute paths elsewhere, which stack.json allows), uploading any that the bucket
        lacks or holds with other content."""
        return self._upload(paths, lambda path: f"s3://{self.bucket}/"
                            f"{stack_key(stack, folder, _stack_relpath(path, folder))}")

    def _upload(self, paths: list[str], uri_of) -> list[str]:
        from ocog_lib.remote.upload import upload_file

        uris = []
        for path in paths:
            uri = uri_of(path)
            upload_file(path, uri, client=self.client)
            uris.append(uri)
        return uris


def _stack_relpath(path: str, folder: str | Path) -> str:
    """A stack file's path inside its folder; a file outside it goes under _external/
    by an id of the folder it is in."""
    p, root = Path(path).resolve(), Path(folder).resolve()
    if p.is_relative_to(root):
        return p.relative_to(root).as_posix()
    return f"_external/{hashlib.sha256(str(p.parent).encode()).hexdigest()[:8]}/{p.name}"


def _front_env(endpoint: Endpoint):
    def env(front: str | None) -> dict[str, str]:
        out = endpoint.env()
        if front:
            out["AWS_ENDPOINT_URL_S3"] = front
            out["AWS_S3_ENDPOINT"] = front.split("://", 1)[-1].rstrip("/")
            out["AWS_HTTPS"] = "YES" if front.startswith("https") else "NO"
        return out

    return env


@contextmanager
def shaped_link(session: RemoteSession, *, rtt_ms: float,
                cap_mb_s: float | None) -> Iterator[Any]:  # fmt: skip
    """A WAN shaper (`remote.shaper.Shaper`) in front of the session's endpoint, and every
    reader in the block pointed at it (ocog's S3 sources, boto3, GDAL's /vsis3/: scoped
    environment variables), the shaper's process left out of memory figures. Yields the
    shaper (its `counters()` say what crossed it)."""
    from ocog_lib.env import scoped_env
    from ocog_lib.memory import not_measured
    from ocog_lib.remote.shaper import Shaper

    host, port = session.endpoint.url.split("://", 1)[1].rsplit(":", 1)
    with (
        Shaper(host, int(port.rstrip("/")), rtt_ms=rtt_ms, cap_mb_s=cap_mb_s) as shaper,
        not_measured(shaper.pid),
        scoped_env(session.env(shaper.url)),
    ):
        yield shaper


@contextmanager
def remote_session(settings: Settings, *, bucket: str | None = None) -> Iterator[RemoteSession]:
    """The configured endpoint, else the running long-lived embedded one, else a server of
    this session's own (stopped at exit)."""
    bucket = bucket or bucket_from_env()
    if configured_endpoint() is not None or embedded_status(settings) is not None:
        endpoint = resolve_endpoint(settings, bucket=bucket, start=False)
        yield RemoteSession(endpoint, endpoint.client(), _front_env(endpoint), False)
        return
    from ocog_lib.memory import not_measured

    with EmbeddedS3() as server, not_measured(server.pid):
        server.ensure_bucket(bucket)
        endpoint = Endpoint(server.endpoint_url, bucket, True, REGION, server.pid)
        yield RemoteSession(endpoint, server.client(), server.env, True)
