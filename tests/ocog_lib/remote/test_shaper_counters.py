"""The shaper's wire counters: what crossed it, read from the parent while it runs."""

from __future__ import annotations

import struct

import pytest
import rasterio
from rasterio.windows import Window

from ocog_lib.errors import InputError
from ocog_lib.remote.shaper import Shaper, ShaperCounters, _CounterBlock
from ocog_lib.storage import HttpObject, S3Object
from tests.support.rangeserver import RangeServer
from tests.support.rasters import real_pixels, write_raster
from tests.support.s3 import local_bytes

HEADER_ALLOWANCE = 600  # bytes of status line and headers a response may add to its body
REQUEST_ALLOWANCE = 2000  # bytes of one request (SigV4 headers included)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_ranged_gets_are_counted_body_plus_headers():
    data = bytes(range(256)) * 4096  # 1 MiB
    ranges = [(0, 100), (5000, 70_000), (300_000, 500_000), (1_000_000, 48_576)]
    with (
        RangeServer({"/f": data}) as server,
        Shaper("127.0.0.1", _port(server.url), rtt_ms=0, cap_mb_s=None) as shaper,
    ):
        assert shaper.counters() == ShaperCounters()
        src = HttpObject(f"{shaper.url}/f")
        before = shaper.counters()
        for offset, length in ranges:
            assert src.read(offset, length) == data[offset : offset + length]
        wire = shaper.counters() - before
        body = sum(n for _, n in ranges)
        assert src.stats().bytes == body
        assert wire.requests == server.requests == len(ranges)
        assert wire.connections == server.connections == 1  # kept alive
        assert body <= wire.bytes_down <= body + len(ranges) * HEADER_ALLOWANCE
        assert 0 < wire.bytes_up <= len(ranges) * REQUEST_ALLOWANCE
        # readings are live: one more request shows up at once
        assert src.read(10, 10) == data[10:20]
        later = shaper.counters()
        assert later.requests == len(ranges) + 1
        assert later.bytes_down >= before.bytes_down + body + 10
    assert shaper.counters() == later  # the final counts outlive the process


def test_s3_requests_and_connections_match_the_source(s3, s3_env, objects):
    with Shaper("127.0.0.1", s3.port, rtt_ms=0, cap_mb_s=None) as shaper:
        src = S3Object(objects.blob_uri, endpoint_url=shaper.url)
        jobs = [(0, 1 << 20), (123_456, 400_000), (2_000_000, 7)]
        for offset, length in jobs:
            assert src.read(offset, length) == local_bytes(objects.blob, offset, length)
        wire = shaper.counters()
    stats = src.stats()
    assert stats.requests == len(jobs) and stats.retries == 0
    assert wire.requests == stats.requests
    assert wire.connections == stats.requests  # moto closes the connection after each response
    assert stats.bytes <= wire.bytes_down <= stats.bytes + stats.requests * HEADER_ALLOWANCE
    assert 0 < wire.bytes_up <= stats.requests * REQUEST_ALLOWANCE


def test_gdal_traffic_is_counted_too(tmp_path):
    """A rasterio/GDAL loader's requests are invisible to ocog's sources; the shaper sees them."""
    cog = write_raster(
        tmp_path / "scene.tif",
        real_pixels(2, 512, 512, "uint16"),
        compress="DEFLATE",
        predictor=2,
        blocksize=128,
    )
    data = cog.read_bytes()
    window = Window(130, 260, 100, 90)
    with (
        RangeServer({"/scene.tif": data}) as server,
        Shaper("127.0.0.1", _port(server.url), rtt_ms=0, cap_mb_s=None) as shaper,
    ):
        env = rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR", CPL_VSIL_CURL_CACHE_SIZE=0)
        with env, rasterio.open(f"/vsicurl/{shaper.url}/scene.tif") as remote:
            pixels = remote.read(window=window)
        wire = shaper.counters()
        assert wire.requests == server.requests >= 1
        assert wire.connections == server.connections >= 1
        assert wire.bytes_down > 0 and wire.bytes_up > 0
    with rasterio.open(cog) as local:
        assert (pixels == local.read(window=window)).all()


def test_counters_before_start_name_the_shaper():
    with pytest.raises(InputError, match="Shaper: not started"):
        Shaper("127.0.0.1", 9, rtt_ms=0, cap_mb_s=None).counters()


def test_the_counter_file_is_removed_on_stop():
    with RangeServer({"/f": b"x" * 10}) as server:
        shaper = Shaper("127.0.0.1", _port(server.url), rtt_ms=0, cap_mb_s=None).start()
        path = shaper._counters.path
        assert path.exists()
        HttpObject(f"{shaper.url}/f").read(0, 10)
        shaper.stop()
    assert not path.exists()
    assert shaper.counters().requests == 1


def test_a_writer_killed_mid_update_does_not_hang_the_reader():
    block = _CounterBlock.create()
    try:
        block.add(0, 1234)
        block._map[:8] = struct.pack("=q", 7)  # an odd sequence: mid-update, forever
        assert block.read(patience_s=0.05).bytes_down == 1234
    finally:
        block.close(unlink=True)
    assert not block.path.exists()
