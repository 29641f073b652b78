"""Whole-object downloads built on `ocog_lib.storage`'s ranged readers.

A Sentinel-2 band is a few hundred MB behind a link that drops now and then. Each
download reads the object in ranged chunks (retries, deadlines and error messages come
from storage.py's sources), keeps up to `connections` chunks in flight but writes them in
order to `.<name>.part`, so an interrupted download resumes from the bytes already on
disk. The part file's sidecar `.<name>.part.json` records the object's size; a remote
object whose size changed starts over. The final name appears only once the size on disk
equals the object's size (and the size STAC announced, when it did): rename is atomic.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ocog_lib.errors import InputError, OcogError
from ocog_lib.storage import ByteSource, RemoteOptions, open_source

DEFAULT_CHUNK_BYTES = 8 << 20
DEFAULT_CONNECTIONS = 4


@dataclass(frozen=True)
class DownloadResult:
    path: Path
    size: int  # bytes of the object (and of the file)
    fetched: int  # bytes fetched by this call
    resumed_from: int  # bytes found in the part file of an earlier attempt
    already_complete: bool  # the final file was there with the right size
    requests: int
    retries: int
    seconds: float


def part_paths(dst: Path) -> tuple[Path, Path]:
    """(part file, its sidecar) beside `dst`."""
    part = dst.with_name(f".{dst.name}.part")
    return part, part.with_name(part.name + ".json")


def _read_state(state: Path) -> dict:
    try:
        return json.loads(state.read_text())
    except (OSError, ValueError):
        return {}


def download(
    source: str | os.PathLike[str] | ByteSource,
    dst: str | os.PathLike[str],
    *,
    expected_size: int | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    connections: int = DEFAULT_CONNECTIONS,
    options: RemoteOptions | None = None,
    sas_token: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DownloadResult:
    """Copy one object (URL, s3:// URI, path or ByteSource) to `dst`, resuming a part file.

    `expected_size` (e.g. STAC's file:size) must match the object's size; `progress` gets
    (bytes on disk, total) after every chunk.
    """
    if chunk_bytes < 1 or connections < 1:
        raise InputError(f"chunk_bytes={chunk_bytes}, connections={connections}", "must be >= 1")
    started = time.monotonic()
    dst = Path(dst)
    src = _as_source(source, options, sas_token)
    before = src.stats()

    def result(fetched: int, resumed: int, complete: bool) -> DownloadResult:
        now = src.stats()
        return DownloadResult(dst, size, fetched, resumed, complete,
                              now.requests - before.requests, now.retries - before.retries,
                              time.monotonic() - started)

    size = src.size()
    if expected_size is not None and expected_size != size:
        raise InputError(src.uri, f"object is {size} bytes, but {expected_size} were announced "
                                  "(STAC file:size); refusing a file of the wrong size")
    if dst.is_file() and dst.stat().st_size == size:
        return result(0, 0, True)

    part, state = part_paths(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    resumed = _resume_point(src, part, state, size)
    _fetch_part(src, part, resumed, size, chunk_bytes, connections, progress)
    _finish_part(part, state, dst, size)
    return result(size - resumed, resumed, False)


def _as_source(source: str | os.PathLike[str] | ByteSource, options: RemoteOptions | None,
               sas_token: str | None) -> ByteSource:
    if isinstance(source, ByteSource):
        return source
    opts: dict = {"options": options} if options is not None else {}
    if sas_token:
        opts["sas_token"] = sas_token
    return open_source(source, **opts)


def _resume_point(src: ByteSource, part: Path, state: Path, size: int) -> int:
    """Bytes of `part` an earlier attempt left for this same object (0: start over)."""
    have = 0
    if part.is_file():
        recorded = _read_state(state)
        if recorded.get("size") == size and recorded.get("uri") == src.uri:
            have = min(part.stat().st_size, size)
    if have == 0:
        part.unlink(missing_ok=True)
    state.write_text(json.dumps({"uri": src.uri, "size": size}))
    return have


def _fetch_part(src: ByteSource, part: Path, have: int, size: int, chunk_bytes: int,
                connections: int, progress: Callable[[int, int], None] | None) -> None:
    """The rest of the object appended to `part`, synced; a failure keeps the bytes so far."""
    with open(part, "r+b" if have else "wb") as out:
        out.truncate(have)
        out.seek(have)
        try:
            _fetch_into(src, out, have, size, chunk_bytes, connections, progress)
        except OcogError as exc:
            out.flush()
            raise InputError(
                src.uri,
                f"download stopped at {out.tell()} of {size} bytes ({exc}); the bytes so far "
                f"are kept in {part} and the next attempt resumes there",
            ) from exc
        out.flush()
        os.fsync(out.fileno())


def _finish_part(part: Path, state: Path, dst: Path, size: int) -> None:
    """Rename a complete part file to `dst` and drop its sidecar."""
    on_disk = part.stat().st_size
    if on_disk != size:  # cannot happen unless the part file was touched meanwhile
        raise InputError(part, f"holds {on_disk} bytes after the download, object has {size}")
    os.replace(part, dst)
    state.unlink(missing_ok=True)


def _fetch_into(src: ByteSource, out, start: int, size: int, chunk: int, connections: int,
                progress: Callable[[int, int], None] | None) -> int:
    """Chunks from `start` to `size`, fetched `connections` at a time, written in order."""
    offsets = iter(range(start, size, chunk))
    pending: deque[Future[bytes]] = deque()
    have = start
    with ThreadPoolExecutor(max_workers=connections, thread_name_prefix="ocog-download") as pool:

        def submit_next() -> None:
            offset = next(offsets, None)
            if offset is not None:
                pending.append(pool.submit(src.read, offset, min(chunk, size - offset)))

        for _ in range(connections):
            submit_next()
        try:
            while pending:
                data = pending.popleft().result()
                out.write(data)
                have += len(data)
                if progress is not None:
                    progress(have, size)
                submit_next()
        finally:
            for f in pending:
                f.cancel()
    return have
