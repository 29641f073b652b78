"""HTTP(S) objects without a server: SAS, remote options, retries against a dead port."""

from __future__ import annotations

import socket

import pytest

from ocog_lib.errors import InputError
from ocog_lib.storage import HttpObject, RemoteOptions, sas_from_env, with_sas


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
