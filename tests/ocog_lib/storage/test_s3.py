"""S3 objects without a server: addressing from the environment, no credential held."""

from __future__ import annotations

import pickle

import pytest

from ocog_lib.errors import InputError
from ocog_lib.storage import S3Object


def test_s3_addressing_and_environment(monkeypatch, clean_aws_env):
    assert S3Object("s3://bkt/a b/c.tif").url == "https://bkt.s3.eu-west-1.amazonaws.com/a%20b/c.tif"
    assert S3Object("s3://my.bkt/k").url == "https://s3.eu-west-1.amazonaws.com/my.bkt/k"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://generic:1")
    assert S3Object("s3://bkt/k").url == "http://generic:1/bkt/k"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://minio:9000/")
    src = S3Object("s3://bkt/k")
    assert src.url == "http://minio:9000/bkt/k" and src.region == "eu-west-1"
    assert S3Object("s3://bkt/k", endpoint_url="http://other:1", region="x").url == (
        "http://other:1/bkt/k"
    )
    with pytest.raises(InputError, match="endpoint must be"):
        S3Object("s3://bkt/k", endpoint_url="minio:9000")
    monkeypatch.setenv("AWS_NO_SIGN_REQUEST", "YES")
    assert S3Object("s3://bkt/k").anonymous


def test_s3_source_holds_no_credentials(monkeypatch, clean_aws_env):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ocog-test-access-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "super/secret+key")
    src = S3Object("s3://bkt/k", endpoint_url="http://127.0.0.1:9")
    state = pickle.dumps(src)
    assert b"super/secret+key" not in state and "super/secret+key" not in repr(src)
    assert pickle.loads(state).uri == "s3://bkt/k"
