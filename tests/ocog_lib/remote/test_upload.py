"""Uploads: multipart for large files, skipped when identical, atomic when they fail."""

from __future__ import annotations

import json
import os

import pytest
from botocore.config import Config

from ocog_lib.errors import InputError
from ocog_lib.remote.upload import UploadConfig, file_sha256, upload_dir, upload_file
from ocog_lib.storage import S3Object
from tests.support.faults import FaultFront
from tests.support.s3 import BUCKET

SMALL_PARTS = UploadConfig(multipart_threshold=8 << 20, part_size=5 << 20, threads=3)


def test_single_put_then_skip_then_reupload_on_change(s3, s3_env, tmp_path):
    path = tmp_path / "a.tif"
    path.write_bytes(os.urandom(300_000))
    uri = f"s3://{BUCKET}/up/single/a.tif"
    first = upload_file(path, uri)
    assert (first.uploaded, first.parts, first.size) == (True, 1, 300_000)
    assert first.sha256 == file_sha256(path)
    assert S3Object(uri).read(0, 300_000) == path.read_bytes()
    again = upload_file(path, uri)
    assert (again.uploaded, again.parts) == (False, 0)
    path.write_bytes(os.urandom(300_000))  # same size, new bytes
    changed = upload_file(path, uri)
    assert changed.uploaded and S3Object(uri).read(0, 300_000) == path.read_bytes()


def test_large_file_goes_up_in_parallel_parts(s3, s3_env, tmp_path):
    path = tmp_path / "big.tif"
    path.write_bytes(os.urandom(12 << 20))
    uri = f"s3://{BUCKET}/up/big.tif"
    result = upload_file(path, uri, config=SMALL_PARTS)
    assert result.uploaded and result.parts == 3
    head = s3.client().head_object(Bucket=BUCKET, Key="up/big.tif")
    assert head["ETag"].strip('"').endswith("-3")  # S3's mark of a multipart object
    assert head["Metadata"]["sha256"] == file_sha256(path)
    assert S3Object(uri).read(0, 12 << 20) == path.read_bytes()
    assert not upload_file(path, uri, config=SMALL_PARTS).uploaded


def test_a_failed_multipart_upload_leaves_nothing_visible(s3, s3_env, tmp_path):
    path = tmp_path / "doomed.tif"
    path.write_bytes(os.urandom(12 << 20))
    client = s3.client()
    with FaultFront(s3.endpoint_url, [500] * 50, match="partNumber=2") as front:
        opts = {"endpoint_url": front.url, "config": Config(retries={"max_attempts": 1})}
        with pytest.raises(InputError) as err:
            upload_file(path, f"s3://{BUCKET}/up/doomed.tif", client_opts=opts, config=SMALL_PARTS)
        assert front.faulted >= 1
    assert err.value.what == f"s3://{BUCKET}/up/doomed.tif" and "upload failed" in err.value.cause
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix="up/doomed")
    assert listed.get("KeyCount", 0) == 0
    assert not client.list_multipart_uploads(Bucket=BUCKET).get("Uploads")  # aborted


def test_upload_dir_keeps_layout_and_sends_the_manifest_last(s3, s3_env, tmp_path):
    root = tmp_path / "variant"
    (root / "scenes").mkdir(parents=True)
    (root / "scenes" / "s1.tif").write_bytes(os.urandom(10_000))
    (root / "scenes" / "s2.tif").write_bytes(os.urandom(20_000))
    (root / "manifest.json").write_text(json.dumps({"items": ["scenes/s1.tif"]}))
    (root / ".manifest.json.1234.tmp").write_text("half written")
    results = upload_dir(root, f"s3://{BUCKET}/variants/v1/", config=SMALL_PARTS)
    uris = [r.uri for r in results]
    assert uris[-1] == f"s3://{BUCKET}/variants/v1/manifest.json"
    assert sorted(uris[:-1]) == [
        f"s3://{BUCKET}/variants/v1/scenes/s1.tif",
        f"s3://{BUCKET}/variants/v1/scenes/s2.tif",
    ]
    listed = s3.client().list_objects_v2(Bucket=BUCKET, Prefix="variants/v1/")
    assert len(listed["Contents"]) == 3  # the hidden temp file stayed home
    for r in results:
        local = root / r.uri.split("variants/v1/")[1]
        assert S3Object(r.uri).read(0, local.stat().st_size) == local.read_bytes()
    assert not any(r.uploaded for r in upload_dir(root, f"s3://{BUCKET}/variants/v1"))


def test_upload_errors_name_the_input(s3, s3_env, tmp_path, monkeypatch):
    path = tmp_path / "x.tif"
    path.write_bytes(b"x" * 100)
    with pytest.raises(InputError, match="bucket does not exist"):
        upload_file(path, "s3://no-such-bucket/x.tif")
    with pytest.raises(InputError, match="file not found"):
        upload_file(tmp_path / "missing.tif", f"s3://{BUCKET}/x.tif")
    with pytest.raises(InputError, match="expected s3://bucket/key"):
        upload_file(path, f"s3://{BUCKET}")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "definitely-wrong-secret")
    with pytest.raises(InputError, match="access denied") as err:
        upload_file(path, f"s3://{BUCKET}/x.tif")
    assert "definitely-wrong-secret" not in str(err.value)
    assert s3.secret_key not in str(err.value)
