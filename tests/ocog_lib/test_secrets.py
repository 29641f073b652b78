"""Redaction: URI secrets, free text, config values by key name."""

from __future__ import annotations

from ocog_lib.secrets import MASK, redact_text, redact_uri, redact_value


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


def test_redact_value_masks_by_key_name_and_url_secrets_in_every_string():
    config = {
        "SAS": "sv=1&sig=abc",
        "client_secret": "s3cr3t",
        "password": "",
        "token": None,
        "nested": [{"api_key": "k-123"}, ("https://h/x?sig=zz99", 3)],
        "sassy": "kept",
    }
    assert redact_value(config) == {
        "SAS": MASK,
        "client_secret": MASK,
        "password": "",
        "token": None,
        "nested": [{"api_key": MASK}, ["https://h/x?sig=***", 3]],
        "sassy": "kept",
    }
    assert config["client_secret"] == "s3cr3t"  # a copy: the input is left as it was
