"""open_source: the reader for each scheme, options checked."""

from __future__ import annotations

import pytest

from ocog_lib.errors import InputError
from ocog_lib.storage import HttpObject, S3Object, open_source


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
