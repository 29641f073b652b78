"""The embedded endpoint: starts, serves, stops by PID; its fast ranged GET agrees with
stock moto on every kind of Range header."""

from __future__ import annotations

import os

import pytest
import urllib3
from botocore.exceptions import ClientError

from ocog_lib.remote.s3server import EmbeddedS3

PAYLOAD = bytes(range(256)) * 40_000  # 10 MB: past moto's in-memory spill threshold
RANGES = [
    "bytes=0-0",
    "bytes=10-19",
    "bytes=5000000-5999999",
    f"bytes={len(PAYLOAD) - 5}-{len(PAYLOAD) + 100}",  # clipped at the end
    f"bytes={len(PAYLOAD) + 5}-{len(PAYLOAD) + 10}",  # past the end: 416
    "bytes=-100",  # suffix: the stock path in both
    "bytes=20-10",  # invalid: the whole object
]


def _answer(server: EmbeddedS3, header: str) -> tuple:
    try:
        r = server.client().get_object(Bucket="bkt", Key="obj", Range=header)
    except ClientError as exc:
        return ("error", exc.response["ResponseMetadata"]["HTTPStatusCode"])
    status = r["ResponseMetadata"]["HTTPStatusCode"]
    return (status, r.get("ContentRange"), r["ContentLength"], r["Body"].read(), r["ETag"])


def test_fast_ranges_agree_with_stock_moto():
    with EmbeddedS3() as fast, EmbeddedS3(fast_ranges=False) as stock:
        # the patch found moto's internals (a moto upgrade that moves them fails here)
        assert fast.fast_ranges_active and not stock.fast_ranges_active
        for server in (fast, stock):
            server.ensure_bucket("bkt")
            server.ensure_bucket("bkt")  # idempotent
            server.client().put_object(Bucket="bkt", Key="obj", Body=PAYLOAD)
        for header in RANGES:
            assert _answer(fast, header) == _answer(stock, header), header
        assert _answer(fast, "bytes=10-19")[3] == PAYLOAD[10:20]


def test_lifecycle_by_pid():
    server = EmbeddedS3()
    with pytest.raises(Exception, match="not started"):
        server.endpoint_url  # noqa: B018
    with server:
        pid, url = server.pid, server.endpoint_url
        os.kill(pid, 0)  # alive
        assert urllib3.PoolManager().request("GET", f"{url}/moto-api/").status == 200
        env = server.env()
        assert env["AWS_ENDPOINT_URL_S3"] == url and env["AWS_ACCESS_KEY_ID"]
        with server.activated() as active:
            assert os.environ["AWS_ENDPOINT_URL_S3"] == url and active == env
        assert os.environ.get("AWS_ENDPOINT_URL_S3") != url  # restored
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(urllib3.exceptions.HTTPError):
        urllib3.PoolManager(retries=False).request("GET", f"{url}/moto-api/")
