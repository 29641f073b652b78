"""`ocog bench files --remote`: the many-files rows from S3, through the WAN shaper.

A loader over 10^4 objects pays a header GET per object before its first batch, each a
round trip; the header index (`cog.header_index`, keyed by URI, versioned by size + ETag)
turns that into a HEAD per object and no header byte. These rows measure both on the
same generated COGs as the local rows, uploaded once to the one layout of
`remote.session` (`s3://<bucket>/files/bench_files-<folder id>/f00000.tif`), every read
through one shaper (`remote.session.shaped_link`, the link of `bench compare --remote`):
the shaper counts the bytes and requests of each open, headers included.

Upload: one LIST of the prefix gives every object's size and ETag; an object whose size
and ETag are the local file's size and MD5 (the ETag S3 gives a single PUT) is kept, so a
second run against the same endpoint puts nothing, and the others are put in parallel
(`upload_threads`), each with its Content-MD5 checked by the store. A store whose ETags
are not MD5s (SSE-KMS) gets every object put again per run: slower, never wrong.

Rows per count: cold, build and warm (as local), and `changed`: object 0 rewritten with
other bytes (another generated COG) after the warm row, so its index entry is stale and
re-read (`index_stale` 1, the others hit), its own bytes put back after the row.
"""

from __future__ import annotations

import base64
import hashlib
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocog_lib.bench.files import (
    MODES,
    FilesBenchConfig,
    FilesRun,
    bench_files_folder,
    first_batch_row,
)
from ocog_lib.bench.rows import StreamRow
from ocog_lib.remote.session import RemoteSession, files_key, remote_session, shaped_link
from ocog_lib.settings import Settings

REMOTE_MODES = (*MODES, "changed")


@dataclass(frozen=True)
class Uploaded:
    """The objects of a run's files, and what it took to have them in the bucket."""

    uris: list[str]
    put: int  # objects put this time (missing, or another content under their key)
    seconds: float


def upload_files(session: RemoteSession, paths: list[str], threads: int = 16) -> Uploaded:
    """`paths` (one flat folder) as objects under `files_key(folder)`, putting only those
    the bucket lacks or holds with other bytes (see the module)."""
    t0 = time.perf_counter()
    folder = Path(paths[0]).parent
    client = session.endpoint.client(max_connections=threads)
    listed = _listed(client, session.bucket, files_key(folder))

    def one(path: str) -> bool:
        key = files_key(folder, Path(path).name)
        data = Path(path).read_bytes()
        digest = hashlib.md5(data, usedforsecurity=False)
        if listed.get(key) == (len(data), digest.hexdigest()):
            return False
        put_object(client, session.bucket, key, data, digest.digest())
        return True

    with ThreadPoolExecutor(threads, thread_name_prefix="ocog-put") as pool:
        put = sum(pool.map(one, paths))
    uris = [f"s3://{session.bucket}/{files_key(folder, Path(p).name)}" for p in paths]
    return Uploaded(uris, put, time.perf_counter() - t0)


def put_object(client: Any, bucket: str, key: str, data: bytes, md5: bytes | None = None) -> None:
    """One PUT, its Content-MD5 checked by the store (a body cut short is refused)."""
    md5 = md5 or hashlib.md5(data, usedforsecurity=False).digest()
    client.put_object(Bucket=bucket, Key=key, Body=data,
                      ContentMD5=base64.b64encode(md5).decode())  # fmt: skip


def _listed(client: Any, bucket: str, prefix: str) -> dict[str, tuple[int, str]]:
    """key -> (size, ETag without its quotes) of every object under `prefix`."""
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", ()):
            out[obj["Key"]] = (int(obj["Size"]), str(obj.get("ETag", "")).strip('"'))
    return out


def bench_remote_files(cfg: FilesBenchConfig, settings: Settings,
                       progress: Callable[[str], None] | None = None) -> FilesRun:  # fmt: skip
    """Per count, the cold, build, warm and changed rows from S3 (see the module)."""
    say = progress or (lambda _m: None)
    counts = sorted(cfg.counts)
    # one file more than the largest count: the other bytes of the changed row
    paths = bench_files_folder(settings, counts[-1] + 1, say)
    spare, paths = paths[-1], paths[:-1]
    rows: list[StreamRow] = []
    with remote_session(settings, bucket=cfg.bucket) as session:
        say(f"{len(paths)} files as s3://{session.bucket}/{files_key(Path(spare).parent)}")
        up = upload_files(session, paths, cfg.upload_threads)
        say(f"{up.put} put, {len(paths) - up.put} already there ({up.seconds:.1f} s)")
        with shaped_link(session, rtt_ms=cfg.rtt_ms, cap_mb_s=cfg.cap_mb_s) as shaper:
            for n in counts:
                rows += _count_rows(session, up.uris[:n], paths[0], spare, cfg, shaper.counters,
                                    say)  # fmt: skip
    upload = {"objects": len(paths), "put": up.put, "seconds": up.seconds}
    return FilesRun(uuid.uuid4().hex[:12], cfg, tuple(rows), upload)


def _count_rows(session: RemoteSession, uris: list[str], first: str, spare: str,
                cfg: FilesBenchConfig, wire: Callable, say: Callable[[str], None],
                ) -> list[StreamRow]:  # fmt: skip
    """One count's rows on an index of its own (removed after them)."""
    rows = []
    with tempfile.TemporaryDirectory(dir=Path(first).parent) as scratch:
        index = Path(scratch) / "headers.duckdb"
        for mode in REMOTE_MODES:
            say(f"{len(uris)} objects, {mode}")
            if mode != "changed":
                rows.append(first_batch_row(uris, cfg, mode, None if mode == "cold" else index,
                                            wire))  # fmt: skip
                continue
            client = session.endpoint.client(max_connections=2)
            key = uris[0].split("/", 3)[3]
            put_object(client, session.bucket, key, Path(spare).read_bytes())
            try:
                rows.append(first_batch_row(uris, cfg, mode, index, wire))
            finally:  # the object's own bytes back: the layout holds the local files
                put_object(client, session.bucket, key, Path(first).read_bytes())
    return rows
