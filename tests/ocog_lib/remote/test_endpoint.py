"""The default endpoint: a configured one wins; otherwise one embedded server per data
folder, shared across processes, reused while alive, stopped by its PID only."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ocog_lib.cli.main import main
from ocog_lib.errors import InputError
from ocog_lib.remote.endpoint import (
    Endpoint,
    embedded_status,
    resolve_endpoint,
    state_path,
    stop_embedded,
)
from ocog_lib.remote.s3server import DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY
from ocog_lib.settings import Settings
from tests.support.processes import alive


@pytest.fixture
def settings(endpoint_settings: Settings) -> Settings:
    return endpoint_settings


def test_a_configured_endpoint_wins_and_starts_nothing(settings, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://generic:1")
    assert resolve_endpoint(settings).url == "http://generic:1"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "https://s3-only.example:2/")
    assert resolve_endpoint(settings).url == "https://s3-only.example:2"
    monkeypatch.setenv("OCOG_S3_ENDPOINT", "http://minio.local:9000")
    monkeypatch.setenv("OCOG_S3_BUCKET", "my-bucket")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    endpoint = resolve_endpoint(settings)
    assert endpoint == Endpoint("http://minio.local:9000", "my-bucket", False, "eu-central-1")
    assert endpoint.uri("/variants/x.tif") == "s3://my-bucket/variants/x.tif"
    assert endpoint.client_opts() == {
        "endpoint_url": "http://minio.local:9000",
        "region_name": "eu-central-1",
    }  # no dummy credentials for a real store
    env = endpoint.env()
    assert (
        env["AWS_ENDPOINT_URL_S3"] == endpoint.url and env["AWS_S3_ENDPOINT"] == "minio.local:9000"
    )
    assert env["AWS_HTTPS"] == "NO" and "AWS_ACCESS_KEY_ID" not in env
    assert resolve_endpoint(settings, url="http://given:5").url == "http://given:5"
    assert not state_path(settings).parent.exists()  # nothing embedded was started

    monkeypatch.setenv("OCOG_S3_ENDPOINT", "minio.local:9000")
    with pytest.raises(InputError, match="^OCOG_S3_ENDPOINT: not an http"):
        resolve_endpoint(settings)
    monkeypatch.setenv("OCOG_S3_ENDPOINT", "http://x:1")
    monkeypatch.setenv("OCOG_S3_BUCKET", "Bad_Bucket")
    with pytest.raises(InputError, match="^OCOG_S3_BUCKET: 'Bad_Bucket' is not a valid"):
        resolve_endpoint(settings)


def test_dummy_credentials_only_when_none_are_configured(settings, monkeypatch):
    embedded = Endpoint("http://127.0.0.1:1", "ocog", True, "us-east-1")
    opts = embedded.client_opts()
    assert (opts["aws_access_key_id"], opts["aws_secret_access_key"]) == (
        DUMMY_ACCESS_KEY,
        DUMMY_SECRET_KEY,
    )
    assert embedded.env()["AWS_ACCESS_KEY_ID"] == DUMMY_ACCESS_KEY
    assert "AWS_ACCESS_KEY_ID" not in os.environ  # handed to our clients, not set globally
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ocog-user-access-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "real-secret")
    assert "aws_access_key_id" not in embedded.client_opts()
    assert "AWS_ACCESS_KEY_ID" not in embedded.env()
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_PROFILE", "work")
    assert "aws_access_key_id" not in embedded.client_opts()


def test_embedded_lifecycle_reuse_stop_and_restart_empty(settings, capsys):
    endpoint = resolve_endpoint(settings)
    assert endpoint.embedded and endpoint.bucket == "ocog" and alive(endpoint.pid)
    parent = Path(f"/proc/{endpoint.pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
    assert int(parent) != os.getpid()  # detached: not a child of the process that started it
    state = json.loads(state_path(settings).read_text())
    assert (state["pid"], f"http://127.0.0.1:{state['port']}") == (endpoint.pid, endpoint.url)
    assert DUMMY_SECRET_KEY not in state_path(settings).read_text()
    client = endpoint.client()
    client.put_object(Bucket="ocog", Key="kept.bin", Body=b"abc" * 1000)

    again = resolve_endpoint(settings)  # reused: same process, same objects
    assert (again.pid, again.url) == (endpoint.pid, endpoint.url)
    head = again.client().head_object(Bucket="ocog", Key="kept.bin")
    assert head["ContentLength"] == 3000

    assert main(["s3", "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["embedded"]["pid"] == endpoint.pid and status["configured"] is None
    assert main(["s3", "serve", "--json"]) == 0
    served = json.loads(capsys.readouterr().out)
    assert served["reused"] and served["pid"] == endpoint.pid

    assert main(["s3", "stop"]) == 0
    assert f"stopped (pid {endpoint.pid})" in capsys.readouterr().out
    assert not alive(endpoint.pid) and not state_path(settings).exists()
    assert embedded_status(settings) is None and stop_embedded(settings) is None
    with pytest.raises(InputError, match="not running"):
        resolve_endpoint(settings, start=False)

    fresh = resolve_endpoint(settings)  # a new server: in memory, so it starts empty
    assert fresh.pid != endpoint.pid
    listed = fresh.client().list_objects_v2(Bucket="ocog")
    assert listed.get("KeyCount", 0) == 0
    assert stop_embedded(settings) == fresh.pid and not alive(fresh.pid)


def test_processes_starting_at_once_share_one_server(settings):
    code = "from ocog_lib.remote.endpoint import resolve_endpoint; print(resolve_endpoint().pid)"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    pids = {int(p.communicate(timeout=60)[0].strip()) for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(pids) == 1
    (pid,) = pids
    assert alive(pid)  # outlives the processes that started it
    assert resolve_endpoint(settings).pid == pid
    assert stop_embedded(settings) == pid and not alive(pid)


def test_a_foreign_pid_in_the_state_file_is_never_signalled(settings):
    path = state_path(settings)
    path.parent.mkdir(parents=True)
    foreign = {"pid": os.getpid(), "host": "127.0.0.1", "port": 9, "started_at": 0, "log": ""}
    path.write_text(json.dumps(foreign))  # this very test process, as if the PID were reused
    assert embedded_status(settings) is None
    assert stop_embedded(settings) is None and not path.exists()
    path.write_text(json.dumps(foreign))
    endpoint = resolve_endpoint(settings)  # replaced by a real server
    assert endpoint.pid != os.getpid() and json.loads(path.read_text())["pid"] == endpoint.pid

    # another data folder's state file names this live server (a recycled PID): hands off
    other = Settings(data_dir=settings.data_dir.parent / "other", results_db=Path("x.duckdb"))
    theirs = dict(json.loads(path.read_text()), log=str(state_path(other).parent / "server.log"))
    state_path(other).parent.mkdir(parents=True)
    state_path(other).write_text(json.dumps(theirs))
    assert embedded_status(other) is None and stop_embedded(other) is None
    assert alive(endpoint.pid) and embedded_status(settings).pid == endpoint.pid

    assert stop_embedded(settings) == endpoint.pid
    path.write_text("{half a json")  # unreadable state: treated as no server
    assert embedded_status(settings) is None and stop_embedded(settings) is None
    path.write_text("{half a json")
    replacement = resolve_endpoint(settings)
    assert alive(replacement.pid) and json.loads(path.read_text())["pid"] == replacement.pid


def test_port_setting_is_checked_before_starting(settings, monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("OCOG_S3_PORT", str(port))
        with pytest.raises(InputError, match=f"^OCOG_S3_PORT: port {port} on 127.0.0.1 is in use"):
            resolve_endpoint(settings)
    assert not state_path(settings).exists()
    monkeypatch.setenv("OCOG_S3_PORT", "http")
    with pytest.raises(InputError, match="^OCOG_S3_PORT: 'http' is not a TCP port"):
        resolve_endpoint(settings)
