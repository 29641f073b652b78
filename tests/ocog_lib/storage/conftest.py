"""Environment for the storage tests: no ambient endpoint, region, profile or SAS."""

from __future__ import annotations

import pytest


@pytest.fixture
def clean_aws_env(monkeypatch):
    for var in (
        "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION",
        "AWS_PROFILE", "AWS_NO_SIGN_REQUEST", "OCOG_AZURE_SAS", "AZURE_STORAGE_SAS_TOKEN",
    ):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
