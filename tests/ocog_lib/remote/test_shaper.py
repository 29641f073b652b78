"""The WAN shaper imposes what it claims: RTT per request, a cap shared by connections.

These check the emulator's correctness with generous bounds (a link can only be slower
than its delay and not faster than its cap); they are not speed targets of ocog.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from ocog_lib.errors import InputError
from ocog_lib.remote.shaper import Fault, Shaper
from ocog_lib.storage import HttpObject, S3Object
from tests.support.rangeserver import RangeServer
from tests.support.s3 import local_bytes


def test_a_ranged_get_takes_at_least_the_rtt(s3, s3_env, objects):
    with Shaper("127.0.0.1", s3.port, rtt_ms=60, cap_mb_s=None) as shaper:
        src = S3Object(objects.blob_uri, endpoint_url=shaper.url)
        src.size()
        start = time.perf_counter()
        data = src.read(4096, 1 << 20)
        took = time.perf_counter() - start
    assert data == local_bytes(objects.blob, 4096, 1 << 20)
    assert took >= 0.060


def test_rtt_is_paid_per_request_on_a_kept_alive_connection():
    data = bytes(range(256)) * 4096
    with RangeServer({"/f": data}) as server, Shaper(
        "127.0.0.1", int(server.url.rsplit(":", 1)[1]), rtt_ms=40, cap_mb_s=None
    ) as shaper:
        src = HttpObject(f"{shaper.url}/f")
        start = time.perf_counter()
        for i in range(5):
            assert src.read(i * 1000, 1000) == data[i * 1000 : (i + 1) * 1000]
        took = time.perf_counter() - start
        assert server.connections == 1 and server.requests == 5
    assert took >= 5 * 0.040


def test_the_cap_is_shared_by_parallel_connections(s3, s3_env, objects):
    cap = 20.0  # MB/s, well under what the embedded server can serve
    with Shaper("127.0.0.1", s3.port, rtt_ms=5, cap_mb_s=cap) as shaper:
        src = S3Object(objects.blob_uri, endpoint_url=shaper.url)
        src.size()
        jobs = [(i * 250_000, 2_000_000) for i in range(4)]  # 8 MB over 4 connections
        start = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda j: src.read(*j), jobs))
        took = time.perf_counter() - start
    assert all(g == local_bytes(objects.blob, o, n) for g, (o, n) in zip(got, jobs, strict=True))
    rate = sum(n for _, n in jobs) / took / 1e6
    # the shaper's claim is a ceiling: never faster than the cap (a floor would be a speed
    # target, which belongs in a benchmark)
    assert rate <= 1.15 * cap


def test_shaper_refuses_nonsense_and_stops_by_pid():
    with pytest.raises(InputError):
        Shaper("127.0.0.1", 9, rtt_ms=-1)
    with pytest.raises(InputError):
        Fault("explode")
    shaper = Shaper("127.0.0.1", 9, rtt_ms=1).start()
    pid = shaper.pid
    shaper.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
