"""Tile keys name the source files' identities: a rewritten file is a new key."""

from __future__ import annotations

import os

import pytest

from ocog_lib.serve.errors import ApiError
from ocog_lib.serve.identity import content_key


def test_key_changes_with_the_file_and_the_arguments_not_their_order(tmp_path):
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    a.write_bytes(b"1234")
    b.write_bytes(b"5678")
    key = content_key([str(a), str(b)], {"z": 1, "x": 2})
    assert key == content_key([str(b), str(a), str(a)], {"x": 2, "z": 1})
    assert key != content_key([str(a), str(b)], {"z": 1, "x": 3})
    st = a.stat()
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert key != content_key([str(a), str(b)], {"z": 1, "x": 2})


def test_a_missing_source_is_a_502_naming_it(tmp_path):
    gone = str(tmp_path / "gone.tif")
    with pytest.raises(ApiError) as exc:
        content_key([gone], {})
    assert exc.value.status == 502 and exc.value.what == gone


def test_a_remote_object_rewritten_at_the_same_size_is_a_new_key(monkeypatch):
    """Over HTTP the key holds the object's ETag, so equal sizes do not hide a rewrite."""
    from ocog_lib.serve import identity
    from tests.support.rangeserver import RangeServer

    with RangeServer({"/a.tif": b"1234"}) as server:
        url = f"{server.url}/a.tif"
        key = content_key([url], {})
        assert key == content_key([url], {})  # looked up once, then remembered
        server.files["/a.tif"] = b"5678"
        monkeypatch.setattr(identity, "_remote", {})  # the minute is over
        assert content_key([url], {}) != key
