"""S3Object and HttpObject against real servers: the bytes are the file's bytes."""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import pickle
import random
from concurrent.futures import ThreadPoolExecutor
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from ocog_lib.cog.decode import decode_tile
from ocog_lib.cog.tiff_index import parse_tiff
from ocog_lib.errors import InputError
from ocog_lib.remote.s3server import EmbeddedS3
from ocog_lib.storage import ByteRange, HttpObject, RemoteOptions, S3Object, open_source
from tests.support.rangeserver import RangeServer
from tests.support.s3 import BUCKET, local_bytes

QUICK = RemoteOptions(attempts=3, backoff_s=0.01, deadline_s=20)


def test_s3_ranges_match_the_local_file(s3_env, objects):
    src = open_source(objects.blob_uri)
    assert isinstance(src, S3Object)
    size = objects.blob.stat().st_size
    assert src.size() == size
    rng = random.Random(3)
    for _ in range(25):
        offset = rng.randrange(size)
        length = rng.randrange(1, min(300_000, size - offset) + 1)
        assert src.read(offset, length) == local_bytes(objects.blob, offset, length)
    assert src.read(0, size) == local_bytes(objects.blob)
    assert src.read(size - 1, 1) == local_bytes(objects.blob, size - 1)
    ranges = [ByteRange(10, 5), ByteRange(0, 10), ByteRange(1 << 20, 100)]
    got = src.read_ranges(ranges)
    want = [local_bytes(objects.blob, r.offset, r.length) for r in ranges]
    assert [bytes(g) for g in got] == want
    stats = src.stats()
    # one HEAD, 27 reads, 2 merged reads; every byte counted, nothing retried
    assert (stats.requests, stats.retries, stats.failures) == (1 + 27 + 2, 0, 0)
    assert stats.bytes > size


def test_head_brings_the_first_bytes_and_the_size_in_one_request(s3_env, objects):
    """Opening a remote TIFF is one round trip: the ranged GET's Content-Range has the size."""
    size = objects.blob.stat().st_size
    src = open_source(objects.blob_uri)
    data, got = src.head(64 * 1024)
    assert got == size and data == local_bytes(objects.blob, 0, 64 * 1024)
    assert src.size() == size and src.stats().requests == 1
    with RangeServer({"/small.bin": b"0123456789"}) as server:  # smaller than asked for
        small = HttpObject(f"{server.url}/small.bin", options=QUICK)
        assert small.head(64 * 1024) == (b"0123456789", 10)
        assert small.stats().requests == 1
    cog = open_source(objects.cog_uri)
    parse_tiff(cog)
    assert cog.stats().requests == 1  # the header fits the first 64 KiB


def test_s3_tiles_decode_to_gdal_pixels(s3_env, objects):
    """The engine's header parser and decoder over S3 give GDAL's pixels."""
    idx = parse_tiff(open_source(objects.cog_uri))
    src = open_source(objects.cog_uri)
    with rasterio.open(objects.cog) as ds:
        for ty, tx in [(0, 0), (1, 2), (3, 3)]:
            offset, length = idx.tile_entry(0, 0, ty, tx)
            tile = decode_tile(idx, src.read(offset, length))
            window = Window(tx * 128, ty * 128, 128, 128)
            np.testing.assert_array_equal(tile, ds.read(window=window))


def test_s3_many_threads_one_source(s3_env, objects):
    src = S3Object(objects.blob_uri, options=RemoteOptions(max_connections=32))
    size = src.size()
    rng = random.Random(5)
    jobs = [(o, rng.randrange(1, 65536)) for o in (rng.randrange(size - 65536) for _ in range(96))]
    with ThreadPoolExecutor(32) as pool:
        got = list(pool.map(lambda j: src.read(*j), jobs))
    assert all(g == local_bytes(objects.blob, o, n) for g, (o, n) in zip(got, jobs, strict=True))
    assert src.stats().requests == 1 + len(jobs)


def _digest_in_child(src, offset, length):
    return hashlib.sha256(src.read(offset, length)).hexdigest(), src.stats().requests


def test_s3_source_pickles_into_forked_workers(s3_env, objects):
    src = open_source(objects.blob_uri)
    src.read(0, 10)  # the parent's pool exists before the fork
    state = pickle.dumps(src)
    assert s3_env["AWS_SECRET_ACCESS_KEY"].encode() not in state
    want = hashlib.sha256(local_bytes(objects.blob, 1000, 50_000)).hexdigest()
    # close + join, not the context manager's terminate(): a runner that ignores SIGTERM in
    # children leaves a terminated worker blocked forever and the suite waiting on it
    pool = multiprocessing.get_context("fork").Pool(2)
    try:
        results = pool.starmap(_digest_in_child, [(src, 1000, 50_000)] * 4)
    finally:
        pool.close()
        pool.join()
    # each worker reads with its own pool and counts from zero
    assert {r[0] for r in results} == {want}
    assert all(r[1] >= 1 for r in results)


def test_s3_key_with_spaces_and_unicode(s3, s3_env, objects):
    key = "odd keys/a b+c=d é (1).bin"
    payload = bytes(range(256)) * 40
    s3.client().put_object(Bucket=BUCKET, Key=key, Body=payload)
    src = open_source(f"s3://{BUCKET}/{key}")
    assert src.size() == len(payload)
    assert src.read(100, 5000) == payload[100:5100]


def test_s3_missing_and_deleted_objects_fail_at_once_naming_them(s3, s3_env, objects):
    with pytest.raises(InputError, match=r"s3://ocog-test/data/nope\.tif: HTTP 404: object"):
        S3Object(f"s3://{BUCKET}/data/nope.tif", options=QUICK).read(0, 10)
    key = "data/deleted-mid-run.bin"
    s3.client().put_object(Bucket=BUCKET, Key=key, Body=b"x" * 5000)
    src = S3Object(f"s3://{BUCKET}/{key}", options=QUICK)
    assert src.read(0, 100) == b"x" * 100
    s3.client().delete_object(Bucket=BUCKET, Key=key)
    with pytest.raises(InputError) as err:
        src.read(100, 100)
    assert err.value.what == f"s3://{BUCKET}/{key}" and "404" in err.value.cause
    assert src.stats().retries == 0 and src.stats().failures == 1


def test_s3_object_replaced_mid_run_is_never_mixed(s3, s3_env):
    key = "data/replaced.bin"
    s3.client().put_object(Bucket=BUCKET, Key=key, Body=b"a" * 5000)
    src = S3Object(f"s3://{BUCKET}/{key}", options=QUICK)
    assert src.size() == 5000  # learns the ETag
    s3.client().put_object(Bucket=BUCKET, Key=key, Body=b"b" * 5000)
    with pytest.raises(InputError, match="changed since it was opened"):
        src.read(0, 100)
    assert S3Object(f"s3://{BUCKET}/{key}").read(0, 3) == b"bbb"


@pytest.mark.parametrize("wrong", ["key", "secret"])
def test_s3_wrong_credentials_are_a_clear_403_without_secrets(s3, objects, monkeypatch, wrong):
    env = s3.env()
    if wrong == "key":
        env["AWS_ACCESS_KEY_ID"] = "ocog-unknown-access-key"
    else:
        env["AWS_SECRET_ACCESS_KEY"] = "not-the-right-secret-at-all"
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    src = S3Object(objects.blob_uri, options=QUICK)
    with pytest.raises(InputError) as err:
        src.read(0, 10)
    message = str(err.value)
    assert message.startswith(objects.blob_uri + ": HTTP 403: access denied")
    code = "InvalidAccessKeyId" if wrong == "key" else "SignatureDoesNotMatch"
    assert code in message
    for secret in (env["AWS_SECRET_ACCESS_KEY"], s3.secret_key):
        assert secret not in message and secret not in repr(src)
    assert src.stats().requests == 1 and src.stats().retries == 0


def test_s3_past_the_end_is_an_input_error(s3_env, objects):
    fresh = S3Object(objects.blob_uri, options=QUICK)  # size unknown: the server says so
    size = objects.blob.stat().st_size
    with pytest.raises(InputError, match=f"past the end of the object \\({size} bytes"):
        fresh.read(size - 10, 20)
    with pytest.raises(InputError, match="HTTP 416"):
        S3Object(objects.blob_uri, options=QUICK).read(size + 10, 20)
    known = S3Object(objects.blob_uri, options=QUICK)
    known.size()
    with pytest.raises(InputError, match="past the end"):
        known.read(size + 10, 20)
    assert known.stats().requests == 1  # the HEAD only: no request for a hopeless range


def test_presigned_url_reads_and_redacts(objects):
    # a server of its own: moto answers presigned URLs only with its auth checks off
    with EmbeddedS3() as plain:
        plain.ensure_bucket(BUCKET)
        plain.client().upload_file(str(objects.blob), BUCKET, "data/blob.bin")
        url = plain.client().generate_presigned_url(
            "get_object", Params={"Bucket": BUCKET, "Key": "data/blob.bin"}, ExpiresIn=600
        )
        src = open_source(url)
        assert isinstance(src, HttpObject)
        assert "X-Amz-Signature=***" in src.uri and "X-Amz-Credential=***" in src.uri
        signature = url.split("X-Amz-Signature=")[1].split("&")[0]
        assert signature not in src.uri and signature not in repr(src)
        assert src.size() == objects.blob.stat().st_size
        assert src.read(12345, 100_000) == local_bytes(objects.blob, 12345, 100_000)
        pid = plain.pid
    with pytest.raises(ProcessLookupError):  # stopped by PID, reaped
        os.kill(pid, 0)


def test_http_sas_token_checked_by_the_server():
    data = bytes(np.random.default_rng(1).integers(0, 256, 200_000, np.uint8))
    with RangeServer({"/c/scene.tif": data}, sig="s3cr3t/sig==") as server:
        sas = "sig=s3cr3t%2Fsig%3D%3D"
        src = HttpObject(f"{server.url}/c/scene.tif?sv=2024&sp=r", sas_token=sas)
        assert src.read(500, 70_000) == data[500:70_500]
        assert src.size() == len(data)
        url = f"{server.url}/c/scene.tif?sv=2024"
        wrong = HttpObject(url, sas_token="sig=guess", options=QUICK)
        with pytest.raises(InputError) as err:
            wrong.read(0, 10)
        assert "HTTP 403" in str(err.value) and "AuthenticationFailed" in str(err.value)
        assert "guess" not in str(err.value) and "guess" not in repr(wrong)
        assert wrong.stats().requests == 1  # not retried
        with pytest.raises(InputError, match=r"/c/other\.tif: HTTP 404"):
            HttpObject(f"{server.url}/c/other.tif", sas_token=sas, options=QUICK).read(0, 10)


def test_http_keep_alive_reuses_connections():
    data = bytes(range(256)) * 1000
    with RangeServer({"/f": data}) as server:
        src = HttpObject(f"{server.url}/f")
        for i in range(20):
            assert src.read(i * 1000, 1000) == data[i * 1000 : (i + 1) * 1000]
        assert server.requests == 20 and server.connections == 1


def test_server_that_ignores_range_is_refused(tmp_path):
    data = bytes(range(256)) * 100
    (tmp_path / "f.bin").write_bytes(data)

    class Quiet(SimpleHTTPRequestHandler):  # the stdlib server: no Range support
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(tmp_path), **kw)

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        src = HttpObject(f"http://127.0.0.1:{server.server_address[1]}/f.bin", options=QUICK)
        with pytest.raises(InputError, match="ignored the Range header"):
            src.read(100, 10)
        # asking for the whole object is the one case a 200 answers correctly
        assert src.read(0, len(data)) == data
    finally:
        server.shutdown()
        server.server_close()


def test_debug_logs_never_show_the_signature(caplog):
    data = bytes(range(256)) * 10
    with RangeServer({"/f": data}, sig="hush-hush") as server:
        with caplog.at_level(logging.DEBUG):
            src = HttpObject(f"{server.url}/f?sv=1&sig=hush-hush")
            assert src.read(0, 10) == data[:10]
            with pytest.raises(InputError):
                HttpObject(f"{server.url}/f?sig=wrong-one", options=QUICK).read(0, 10)
    assert "/f?sv=1&sig=***" in caplog.text  # urllib3's request line, masked
    assert "hush-hush" not in caplog.text and "wrong-one" not in caplog.text


def test_http_redirects_are_followed_with_the_range():
    data = bytes(range(256)) * 100
    with RangeServer({"/real.tif": data}, redirects={"/old.tif": "/real.tif"}) as server:
        src = HttpObject(f"{server.url}/old.tif")
        assert src.read(1000, 500) == data[1000:1500]
        assert src.size() == len(data)


def _read_in_forked_child(src, offset, length, queue):
    queue.put(src.read(offset, length))


def test_a_source_inherited_by_fork_gets_fresh_locks(s3_env, objects):
    """A lock held by another thread at fork time must not stay held in the child."""
    src = open_source(objects.blob_uri)
    src.read(0, 10)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    with src._lock:  # as if an I/O thread were inside it when the DataLoader forks
        child = ctx.Process(target=_read_in_forked_child, args=(src, 2000, 3000, queue))
        child.start()
        child.join(timeout=30)
    assert child.exitcode == 0
    assert queue.get(timeout=5) == local_bytes(objects.blob, 2000, 3000)


def test_gdal_reads_the_same_pixels_with_the_servers_env(s3_env, objects):
    """`EmbeddedS3.env()` also points GDAL's /vsis3/ (the fallback and reference path) here."""
    window = Window(100, 50, 300, 200)
    with rasterio.open(objects.cog_uri) as remote, rasterio.open(objects.cog) as local:
        np.testing.assert_array_equal(remote.read(window=window), local.read(window=window))
