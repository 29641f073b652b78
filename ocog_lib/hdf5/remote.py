"""A package read by byte ranges: h5py's fileobj driver over an `ocog_lib.storage` source.

h5py here is built without the ros3 driver, and ros3 would not know ocog's retries, SAS
tokens or the embedded endpoint anyway, so remote packages go through `ByteSourceFile`:
a read-only, seekable file object over a `ByteSource`. HDF5 reads its metadata (superblock,
object headers, the chunk index) in many small pieces, so reads smaller than a block are
served from an LRU cache of `block_size` blocks (a remote open costs a few requests, not
hundreds); a read of a block or more (a compressed sample chunk) is one ranged GET of
exactly its bytes. h5py holds one lock per process, so one process reads one chunk at a
time: parallel requests come from DataLoader workers, each with its own file object.
"""

from __future__ import annotations

import io
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ocog_lib.storage import ByteSource, open_source

BLOCK_SIZE = 256 * 1024
CACHE_BLOCKS = 64  # 16 MiB per open file


def is_remote(uri: str | os.PathLike[str]) -> bool:
    return urlsplit(str(uri)).scheme in ("s3", "http", "https")


class ByteSourceFile(io.RawIOBase):
    """Read-only file object over a ByteSource (what h5py.File(fileobj) needs)."""

    def __init__(
        self, source: ByteSource, *, block_size: int = BLOCK_SIZE, cache_blocks: int = CACHE_BLOCKS
    ):
        super().__init__()
        self.source = source
        self.name = source.uri
        self.block_size = block_size
        self.cache_blocks = cache_blocks
        self._size = source.size()
        self._pos = 0
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = min(len(view), max(0, self._size - self._pos))
        if n == 0:
            return 0
        view[:n] = self._read(self._pos, n)
        self._pos += n
        return n

    def _read(self, offset: int, length: int) -> bytes:
        if length >= self.block_size:
            return self.source.read(offset, length)
        first, last = offset // self.block_size, (offset + length - 1) // self.block_size
        parts = [self._block(b) for b in range(first, last + 1)]
        blob = parts[0] if len(parts) == 1 else b"".join(parts)
        start = offset - first * self.block_size
        return blob[start : start + length]

    def _block(self, index: int) -> bytes:
        with self._lock:
            hit = self._blocks.get(index)
            if hit is not None:
                self._blocks.move_to_end(index)
                return hit
        start = index * self.block_size
        data = self.source.read(start, min(self.block_size, self._size - start))
        with self._lock:
            self._blocks[index] = data
            while len(self._blocks) > self.cache_blocks:
                self._blocks.popitem(last=False)
        return data


def open_h5(uri: str | os.PathLike[str], **source_opts: Any):
    """An h5py.File for reading: local paths directly, remote URIs through ByteSourceFile."""
    import h5py

    if not is_remote(uri):
        return h5py.File(str(uri), "r")
    return h5py.File(ByteSourceFile(open_source(str(uri), **source_opts)), "r")


def read_bytes(uri: str | os.PathLike[str], **source_opts: Any) -> bytes:
    """A whole (small) object: a sidecar JSON beside a package."""
    if not is_remote(uri):
        return Path(uri).read_bytes()
    source = open_source(str(uri), **source_opts)
    return source.read(0, source.size())

