"""`bench tiles --remote` for real on loopback: the embedded S3 server, the WAN shaper, ocog
through its storage layer and rio-tiler through GDAL's /vsis3/ reading the same objects."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ocog_lib.bench.tile_readers import clear_gdal_http_cache
from ocog_lib.cli.main import main
from ocog_lib.cube.reads import read_tile
from ocog_lib.cube.stack import SceneStack
from ocog_lib.data.timestack import build_time_stack
from ocog_lib.env import scoped_env
from ocog_lib.remote.endpoint import ENDPOINT_VARS
from ocog_lib.remote.session import remote_session, stack_key
from ocog_lib.settings import Settings
from tests.support.s3 import CREDENTIAL_VARS

RTT_MS, CAP = 5.0, 200.0


@pytest.fixture(scope="module")
def stack_json(tmp_path_factory):
    return build_time_stack(tmp_path_factory.mktemp("tiles") / "stack", dates=2, size=256)


@pytest.fixture
def no_endpoint(monkeypatch, tmp_path):
    """No endpoint or AWS credentials configured: a private embedded server per run."""
    for var in (*ENDPOINT_VARS, *CREDENTIAL_VARS, "OCOG_S3_BUCKET", "OCOG_S3_PORT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("OCOG_DATA_DIR", str(tmp_path / "data"))


def test_remote_rows_side_by_side_with_local(stack_json, no_endpoint, capsys):
    from ocog_lib.bench.tiles import default_zooms

    zoom = default_zooms(SceneStack.load(stack_json), "WebMercatorQuad")[1]
    rc = main(["bench", "tiles", "--stack", str(stack_json), "--zooms", str(zoom), "--tiles",
               "2", "--repeats", "1", "--remote", "--rtt-ms", str(RTT_MS), "--cap-mb-s",
               str(CAP), "--json", "--no-record"])  # fmt: skip
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    rows = {(r["location"], r["loader"], r["state"]): r for r in doc["rows"]}
    assert set(rows) == {(lo, ld, s) for lo in ("local", "remote") for ld in ("ocog", "rio-tiler")
                         for s in ("cold", "warm")}  # fmt: skip
    assert all(r["equal"] is True and r["p50_ms"] > 0 for r in doc["rows"])
    local, cold = rows[("local", "ocog", "cold")], rows[("remote", "ocog", "cold")]
    assert cold["bytes_per_tile"] == local["bytes_per_tile"] > 0  # the same tiles, same bytes
    for loader in ("ocog", "rio-tiler"):  # both went through the shaper, to the same objects
        c, w = rows[("remote", loader, "cold")], rows[("remote", loader, "warm")]
        assert c["wire_bytes_per_tile"] > 0 and c["requests_per_tile"] >= 1
        assert c["limit_ms"] == pytest.approx(2 * RTT_MS + c["wire_bytes_per_tile"] / (CAP * 1e3))
        assert c["ratio_vs_limit"] == pytest.approx(c["p50_ms"] / c["limit_ms"])
        assert c["endpoint_floor_ms"] > 0 and w["limit_ms"] is None
    assert rows[("remote", "ocog", "warm")]["wire_bytes_per_tile"] == 0  # all in the cache
    assert rows[("remote", "ocog", "cold")]["wire_bytes_per_tile"] >= cold["bytes_per_tile"]
    assert doc["config"]["sites"]["remote"]["rtt_ms"] == RTT_MS
    assert doc["config"]["sites"]["remote"]["endpoint_gets_s"] > 0


def test_stack_json_with_s3_uris_reads_like_the_local_stack(stack_json, no_endpoint):
    local = SceneStack.load(stack_json)
    doc = json.loads(stack_json.read_text())
    with remote_session(Settings.from_env()) as session:
        for row, scene in zip(doc["scenes"], local.scenes, strict=True):
            paths = [local.uri(scene, a) for a in row["assets"]]
            uris = session.upload_stack_files(local.name, stack_json.parent, paths)
            assert all(stack_key(local.name, stack_json.parent) in u for u in uris)
            row["assets"] = dict(zip(row["assets"], uris, strict=True))
        remote_json = stack_json.parent.parent / "remote-stack.json"
        remote_json.write_text(json.dumps(doc))
        remote = SceneStack.load(remote_json)  # absolute s3:// URIs in stack.json
        assert remote.uri(remote.scenes[0], "red").startswith(f"s3://{session.bucket}/stacks/")
        with scoped_env(session.env()):
            from ocog_lib.bench.tiles import tiles_inside
            from ocog_lib.cube import sources

            sources.engine(sources.DEFAULT_CACHE_BYTES)  # nothing cached by an earlier test
            z = 15
            x, y = tiles_inside(local, "WebMercatorQuad", z, 1)[0]
            theirs = read_tile(remote, z, x, y, expression="(nir-red)/(nir+red)")
    ours = read_tile(local, z, x, y, expression="(nir-red)/(nir+red)")
    np.testing.assert_array_equal(theirs.data, ours.data)
    assert theirs.bytes_fetched == ours.bytes_fetched > 0


def test_gdal_http_cache_can_be_cleared():
    assert clear_gdal_http_cache() is True
