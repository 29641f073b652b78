"""Local files: pread, counters, short reads refused, pickling."""

from __future__ import annotations

import pickle

import pytest

from ocog_lib.errors import InputError
from ocog_lib.storage import ByteRange, LocalFile, open_source


def test_local_file_reads_counts_and_refuses_short_reads(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(256)) * 4)
    src = open_source(path)
    assert isinstance(src, LocalFile) and src.size() == 1024
    assert src.read(250, 10) == bytes(range(250, 256)) + bytes(range(4))
    parts = src.read_ranges([ByteRange(0, 2), ByteRange(2, 3), ByteRange(1000, 4)])
    assert [bytes(p) for p in parts] == [b"\x00\x01", b"\x02\x03\x04", bytes(range(232, 236))]
    # one read, then read_ranges' two: 0-5 merged and 1000-1004
    assert src.stats().requests == 3 and src.stats().bytes == 10 + 5 + 4
    with pytest.raises(InputError, match="truncated"):
        src.read(1020, 10)
    assert open_source(f"file://{path}").read(0, 2) == b"\x00\x01"
    clone = pickle.loads(pickle.dumps(src))
    assert clone.read(0, 4) == bytes(range(4)) and clone.stats().requests == 1
