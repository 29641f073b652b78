"""Ranged, resumable, size-checked, atomic downloads against real servers on 127.0.0.1."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ocog_lib.data.download import download, part_paths
from ocog_lib.errors import InputError
from tests.support.faults import FaultFront
from ocog_lib.remote.shaper import Fault, Shaper
from ocog_lib.storage import RemoteOptions
from tests.support.rangeserver import RangeServer

BLOB = np.random.default_rng(3).integers(0, 256, 3 << 20, np.uint8).tobytes()
CHUNK = 256 << 10
FAST = RemoteOptions(attempts=4, backoff_s=0.01, backoff_max_s=0.05, read_timeout_s=1.0,
                     deadline_s=20.0)


@pytest.fixture(scope="module")
def server():
    with RangeServer({"/b/blob.bin": BLOB, "/b/small.bin": BLOB[:1000]}) as srv:
        yield srv


def test_whole_object_arrives_in_ranged_chunks(server, tmp_path):
    dst = tmp_path / "out" / "blob.bin"
    seen = []
    res = download(f"{server.url}/b/blob.bin", dst, chunk_bytes=CHUNK, connections=3,
                   progress=lambda have, total: seen.append((have, total)))
    assert dst.read_bytes() == BLOB
    assert (res.size, res.fetched, res.resumed_from, res.already_complete) == (
        len(BLOB), len(BLOB), 0, False)
    assert res.requests == 1 + len(BLOB) // CHUNK  # one size probe, then one GET per chunk
    assert seen[-1] == (len(BLOB), len(BLOB)) and [h for h, _ in seen] == sorted(
        h for h, _ in seen)
    assert not any(p.exists() for p in part_paths(dst))
    again = download(f"{server.url}/b/blob.bin", dst, chunk_bytes=CHUNK)
    assert again.already_complete and again.fetched == 0


def test_interrupted_download_resumes_from_its_part_file(server, tmp_path):
    dst = tmp_path / "blob.bin"
    src = f"{server.url}/b/blob.bin"
    # a crash left a part file holding the first 5 chunks
    part, state = part_paths(dst)
    part.write_bytes(BLOB[: 5 * CHUNK])
    state.write_text(json.dumps({"uri": src, "size": len(BLOB)}))
    res = download(src, dst, chunk_bytes=CHUNK, connections=2)
    assert dst.read_bytes() == BLOB
    assert res.resumed_from == 5 * CHUNK and res.fetched == len(BLOB) - 5 * CHUNK
    assert res.requests == 1 + (len(BLOB) - 5 * CHUNK) // CHUNK


def test_part_file_of_another_size_starts_over(server, tmp_path):
    dst = tmp_path / "blob.bin"
    part, state = part_paths(dst)
    part.write_bytes(b"x" * 1000)
    state.write_text(json.dumps({"uri": f"{server.url}/b/blob.bin", "size": len(BLOB) + 1}))
    res = download(f"{server.url}/b/blob.bin", dst, chunk_bytes=CHUNK)
    assert res.resumed_from == 0 and dst.read_bytes() == BLOB


def test_announced_size_must_match(server, tmp_path):
    dst = tmp_path / "small.bin"
    with pytest.raises(InputError, match="1000 bytes, but 999 were announced"):
        download(f"{server.url}/b/small.bin", dst, expected_size=999)
    assert not dst.exists()
    assert download(f"{server.url}/b/small.bin", dst, expected_size=1000).size == 1000


def test_5xx_answers_are_retried(server, tmp_path):
    with FaultFront(server.url, [503, 500, 502]) as front:
        res = download(f"{front.url}/b/blob.bin", tmp_path / "blob.bin", chunk_bytes=CHUNK,
                       connections=2, options=FAST)
        assert front.faulted == 3
    assert (tmp_path / "blob.bin").read_bytes() == BLOB
    assert res.retries == 3


def test_lasting_failure_names_the_url_and_keeps_the_bytes_so_far(server, tmp_path):
    dst = tmp_path / "blob.bin"
    with FaultFront(server.url, []) as front:

        def fail_from_the_fourth_chunk(have: int, total: int) -> None:
            if have == 3 * CHUNK:
                front.inject([500] * FAST.attempts)

        with pytest.raises(InputError) as err:
            download(f"{front.url}/b/blob.bin", dst, chunk_bytes=CHUNK, connections=1,
                     options=FAST, progress=fail_from_the_fourth_chunk)
        message = str(err.value)
        assert "/b/blob.bin" in message and "HTTP 500" in message and "resumes" in message
        assert f"after {FAST.attempts} attempt(s)" in message
        part, _ = part_paths(dst)
        assert not dst.exists() and part.read_bytes() == BLOB[: 3 * CHUNK]
        # the next attempt at the same URL (the faults are spent) picks up the part file
        res = download(f"{front.url}/b/blob.bin", dst, chunk_bytes=CHUNK)
    assert res.resumed_from == 3 * CHUNK and dst.read_bytes() == BLOB


@pytest.mark.parametrize("kind", ["reset", "truncate", "stall"])
def test_broken_connections_are_retried(server, tmp_path, kind):
    port = int(server.url.rsplit(":", 1)[1])
    with Shaper("127.0.0.1", port, rtt_ms=0, cap_mb_s=None,
                fault=Fault(kind, after_bytes=100_000, count=2)) as link:
        res = download(f"{link.url}/b/blob.bin", tmp_path / "blob.bin", chunk_bytes=CHUNK,
                       connections=2, options=FAST)
    assert (tmp_path / "blob.bin").read_bytes() == BLOB
    assert res.retries == 2


def test_missing_object_is_a_clear_error(server, tmp_path):
    with pytest.raises(InputError, match="HTTP 404"):
        download(f"{server.url}/b/nothing.bin", tmp_path / "x.bin")
    assert not (tmp_path / "x.bin").exists()


def test_local_paths_download_too(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(BLOB[:5000])
    res = download(src, tmp_path / "copy.bin", chunk_bytes=1024)
    assert (tmp_path / "copy.bin").read_bytes() == BLOB[:5000] and res.fetched == 5000
