"""URIs to byte-range readers.

The engine never opens a dataset per sample: it asks a `ByteSource` for byte ranges.
A source is picklable and opens its handle lazily in the process that reads, so no file
descriptor or connection ever crosses a fork (DataLoader workers, spawn or fork).
Local paths are read with `os.pread` (releases the GIL); remote schemes slot in here.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from ocog_lib.errors import InputError


@dataclass(frozen=True)
class ByteRange:
    offset: int
    length: int

    @property
    def end(self) -> int:
        return self.offset + self.length


def merge_ranges(ranges: list[ByteRange], *, max_gap: int = 0) -> list[tuple[ByteRange, list[int]]]:
    """Coalesce ranges that touch (or lie within `max_gap` bytes) into fewer reads.

    Returns the merged ranges, each with the indices of the input ranges it covers, so a
    caller can slice every original range back out of one read.
    """
    order = sorted(range(len(ranges)), key=lambda i: ranges[i].offset)
    merged: list[tuple[ByteRange, list[int]]] = []
    start = end = -1
    members: list[int] = []
    for i in order:
        r = ranges[i]
        if members and r.offset <= end + max_gap:
            end = max(end, r.end)
            members.append(i)
            continue
        if members:
            merged.append((ByteRange(start, end - start), members))
        start, end, members = r.offset, r.end, [i]
    if members:
        merged.append((ByteRange(start, end - start), members))
    return merged


class ByteSource:
    """Reads byte ranges of one object. Subclasses must stay picklable."""

    uri: str

    def size(self) -> int:
        raise NotImplementedError

    def read(self, offset: int, length: int) -> bytes:
        raise NotImplementedError

    def read_ranges(self, ranges: list[ByteRange], *, max_gap: int = 0) -> list[bytes]:
        """Read many ranges with as few requests as merging allows."""
        out: list[bytes] = [b""] * len(ranges)
        for merged, members in merge_ranges(ranges, max_gap=max_gap):
            blob = memoryview(self.read(merged.offset, merged.length))
            for i in members:
                r = ranges[i]
                out[i] = blob[r.offset - merged.offset : r.end - merged.offset]
        return out


class LocalFile(ByteSource):
    """A local file read with pread; one descriptor per process, opened on first use."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = str(path)
        self.uri = self.path
        self._fd: int | None = None
        self._pid = -1
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])

    def _handle(self) -> int:
        pid = os.getpid()
        if self._fd is None or self._pid != pid:
            with self._lock:
                if self._fd is None or self._pid != pid:
                    try:
                        self._fd = os.open(self.path, os.O_RDONLY)
                    except FileNotFoundError as exc:
                        raise InputError(self.path, "file not found") from exc
                    except IsADirectoryError as exc:
                        raise InputError(self.path, "is a directory, not a file") from exc
                    except PermissionError as exc:
                        raise InputError(self.path, "permission denied") from exc
                    self._pid = pid
        return self._fd

    def size(self) -> int:
        return os.fstat(self._handle()).st_size

    def read(self, offset: int, length: int) -> bytes:
        data = os.pread(self._handle(), length, offset)
        if len(data) != length:
            raise InputError(
                self.path,
                f"truncated: wanted {length} bytes at offset {offset}, file gave {len(data)}",
            )
        return data

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def open_source(uri: str | os.PathLike[str]) -> ByteSource:
    """Pick the reader for a URI: local paths and file:// now; s3:// and http(s):// next."""
    text = str(uri)
    parsed = urlparse(text)
    if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and os.name == "nt"):
        path = Path(parsed.path if parsed.scheme == "file" else text)
        if not path.exists():
            raise InputError(path, "file not found")
        return LocalFile(path)
    raise InputError(text, f"URI scheme '{parsed.scheme}' is not supported yet (local paths only)")
