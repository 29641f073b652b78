"""`ocog bench files --remote` against the embedded moto server, through the shaper: a warm
index fetches no header (only one version check per object crosses the link), a changed
object's entry is re-read, and a second upload puts only what changed (no speed targets)."""

from __future__ import annotations

import json

import pytest

from ocog_lib import results
from ocog_lib.bench.files import bench_files_folder
from ocog_lib.bench.files_remote import put_object, upload_files
from ocog_lib.cli.main import main
from ocog_lib.remote.session import remote_session
from ocog_lib.settings import Settings
from tests.support.s3 import BUCKET


@pytest.fixture
def settings(s3_env, tmp_path, monkeypatch) -> Settings:
    """A data folder of its own; the session's moto server as the configured endpoint."""
    monkeypatch.setenv("OCOG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OCOG_DUCKDB", str(tmp_path / "r.duckdb"))
    monkeypatch.setenv("OCOG_S3_BUCKET", BUCKET)
    return Settings.from_env()


def test_remote_rows_warm_reads_no_header_and_a_changed_object_is_reread(settings, capsys):
    n = 20
    assert main(["bench", "files", "--remote", "--counts", str(n), "--rtt-ms", "5",
                 "--cap-mb-s", "200", "--json"]) == 0  # fmt: skip
    doc = json.loads(capsys.readouterr().out)
    assert doc["storage"] == "remote" and doc["upload"] == {
        "objects": n, "put": n, "seconds": doc["upload"]["seconds"]}  # a fresh prefix
    rows = {r["config"]["mode"]: r["config"] for r in doc["rows"]}
    assert list(rows) == ["cold", "build", "warm", "changed"]
    cold, build, warm, changed = rows.values()
    for c in (cold, build):  # every header parsed, its bytes over the link
        assert c["header_bytes"] > 0 and c["index_hits"] == 0 and c["probe_requests"] == 0
        assert c["wire_bytes_open"] >= c["header_bytes"] and c["requests_open"] == n
    # warm: no header byte; what crossed the link is one version check (HEAD) per object
    assert warm["header_bytes"] == 0 and warm["index_hits"] == n and warm["index_stale"] == 0
    assert warm["requests_open"] == warm["probe_requests"] == n
    assert warm["wire_bytes_open"] < cold["wire_bytes_open"] / 10
    # object 0 rewritten with other bytes: its entry alone is stale and its header re-read
    assert (changed["index_stale"], changed["index_hits"]) == (1, n - 1)
    assert changed["header_bytes"] == cold["header_bytes"] / n
    assert changed["requests_open"] == n + 1  # the versions, and the one header
    assert all(r["startup_s"] >= r["config"]["open_s"] > 0 for r in doc["rows"])
    _, stored = results.query(settings.results_db, "SELECT DISTINCT storage FROM "
                              f"stream_benchmarks WHERE run_id = '{doc['run_id']}'")  # fmt: skip
    assert stored == [("remote",)]


def test_a_second_upload_puts_only_objects_whose_bytes_differ(settings):
    paths = bench_files_folder(settings, 3)
    with remote_session(settings) as session:
        first = upload_files(session, paths, threads=3)
        again = upload_files(session, paths, threads=3)
        key = first.uris[1].split("/", 3)[3]
        put_object(session.client, session.bucket, key, b"other bytes")
        third = upload_files(session, paths, threads=3)
        body = session.client.get_object(Bucket=session.bucket, Key=key)["Body"].read()
    assert (first.put, again.put, third.put) == (3, 0, 1)
    assert first.uris == again.uris == third.uris and body == open(paths[1], "rb").read()
