"""Byte sources without a server: local reads, dispatch, addressing, redaction, options."""

from __future__ import annotations

import pickle
import socket

import pytest

from ocog_lib.errors import InputError
from ocog_lib.secrets import redact_text, redact_uri
from ocog_lib.storage import (
    ByteRange,
    HttpObject,
    LocalFile,
    RemoteOptions,
    S3Object,
    open_source,
    sas_from_env,
    with_sas,
)


@pytest.fixture
def clean_aws_env(monkeypatch):
    for var in (
        "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION",
        "AWS_PROFILE", "AWS_NO_SIGN_REQUEST", "OCOG_AZURE_SAS", "AZURE_STORAGE_SAS_TOKEN",
    ):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")


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


def test_open_source_dispatches_on_scheme(tmp_path, clean_aws_env):
    with pytest.raises(InputError, match="file not found"):
        open_source(tmp_path / "missing.tif")
    s3 = open_source("s3://bkt/dir/a.tif", endpoint_url="http://127.0.0.1:9", sas_token="x")
    assert isinstance(s3, S3Object) and s3.uri == "s3://bkt/dir/a.tif"
    http = open_source("https://example.org/a.tif", endpoint_url="http://127.0.0.1:9")
    assert isinstance(http, HttpObject)
    with pytest.raises(InputError, match="scheme 'gs' is not supported"):
        open_source("gs://bkt/a.tif")
    with pytest.raises(InputError, match="unknown source option"):
        open_source("s3://bkt/a.tif", endpoint="http://x")
    with pytest.raises(InputError, match="expected s3://bucket/key"):
        open_source("s3://bkt")


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


def test_redaction_masks_secrets_and_keeps_the_rest():
    sas = "https://acct.blob.core.windows.net/c/a%20b.tif?sv=2022-11-02&sp=r&sig=AbC%2Fd%3D&se=2030"
    assert redact_uri(sas) == (
        "https://acct.blob.core.windows.net/c/a%20b.tif?sv=2022-11-02&sp=r&sig=***&se=2030"
    )
    presigned = "http://h:1/b/k?X-Amz-Credential=keyid%2F1&X-Amz-Signature=ff00&X-Amz-Date=1"
    assert redact_uri(presigned) == (
        "http://h:1/b/k?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Date=1"
    )
    assert redact_uri("https://user:pw@host/x") == "https://user:***@host/x"
    assert redact_uri("s3://bkt/key.tif") == "s3://bkt/key.tif"
    assert redact_uri("/data/a.tif") == "/data/a.tif"
    text = (
        "GET /c/x?sig=abc&se=1 failed; "
        "Authorization: AWS4-HMAC-SHA256 Credential=keyid/x, Signature=ab12"
    )
    out = redact_text(text + " and hunter22", ["hunter22"])
    assert "abc" not in out and "keyid" not in out and "ab12" not in out and "hunter22" not in out
    assert "se=1" in out


def test_sas_from_env_only_goes_to_azure_hosts(monkeypatch, clean_aws_env):
    monkeypatch.setenv("OCOG_AZURE_SAS", "?sv=2024&sig=SeCrEt")
    azure = "https://acct.blob.core.windows.net/c/a.tif"
    assert sas_from_env(azure) == "?sv=2024&sig=SeCrEt"
    assert sas_from_env("https://example.org/a.tif") is None
    assert with_sas(azure, "sv=1&sig=x") == azure + "?sv=1&sig=x"
    assert with_sas(azure + "?a=1", "sig=x") == azure + "?a=1&sig=x"
    assert with_sas(azure + "?sig=already", "sig=x") == azure + "?sig=already"
    src = HttpObject(azure)
    assert src.uri == azure and "SeCrEt" not in repr(src)  # uri: the URL as given, redacted
    assert "SeCrEt" in src._url()  # ... but the request carries the token
    assert "SeCrEt" not in HttpObject("https://example.org/a.tif")._url()


def test_remote_options_from_env_and_validation(monkeypatch):
    monkeypatch.setenv("OCOG_REMOTE_DEADLINE_S", "7.5")
    monkeypatch.setenv("OCOG_REMOTE_MAX_CONNECTIONS", "32")
    opts = RemoteOptions.from_env(attempts=2)
    assert (opts.deadline_s, opts.max_connections, opts.attempts) == (7.5, 32, 2)
    monkeypatch.setenv("OCOG_REMOTE_ATTEMPTS", "many")
    with pytest.raises(InputError, match="OCOG_REMOTE_ATTEMPTS"):
        RemoteOptions.from_env()
    with pytest.raises(InputError):
        RemoteOptions(attempts=0)
    with pytest.raises(InputError):
        RemoteOptions(deadline_s=0)


def test_unreachable_server_fails_after_retries_with_redacted_uri():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = RemoteOptions(attempts=3, backoff_s=0.01, deadline_s=10)
    src = HttpObject(f"http://127.0.0.1:{port}/a.tif?sig=topsecret", options=options)
    with pytest.raises(InputError) as err:
        src.read(0, 10)
    assert err.value.what == f"http://127.0.0.1:{port}/a.tif?sig=***"
    assert "after 3 attempt(s)" in err.value.cause and "topsecret" not in str(err.value)
    assert src.stats().retries == 2 and src.stats().failures == 1
