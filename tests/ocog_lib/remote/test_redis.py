"""The local Redis server (the Celery broker): started for real, talked to, bound to
loopback without persistence, a taken port retried, stopped by PID; the workers' config
module says where the broker is."""

from __future__ import annotations

import importlib.util
import socket

import pytest
import redis as redis_client

from ocog_lib.errors import InputError
from ocog_lib.remote import redis as embedded
from ocog_lib.remote.celery_workers import CeleryWorkers, WorkerConfig, write_config_module
from ocog_lib.remote.redis import EmbeddedRedis, find_redis_server, ping
from tests.support.processes import alive
from tests.support.redis import redis_server, require_redis  # noqa: F401


def test_server_answers_on_loopback_without_persistence(redis_server):  # noqa: F811
    server = redis_server
    assert server.url == f"redis://127.0.0.1:{server.port}/0" and alive(server.pid)
    assert "@" not in server.url and str(server.pid) in repr(server)
    client = redis_client.Redis.from_url(server.url_for(3))
    client.set("ocog:test", b"1")
    assert client.get("ocog:test") == b"1"
    assert client.config_get("bind")["bind"] == "127.0.0.1"
    assert client.config_get("save")["save"] == ""
    assert client.config_get("appendonly")["appendonly"] == "no"
    client.close()


def test_taken_port_is_retried_and_the_server_is_stopped_by_pid(monkeypatch):
    require_redis()
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    ports = iter([taken.getsockname()[1]])
    real = embedded.free_port
    monkeypatch.setattr(embedded, "free_port", lambda host: next(ports, None) or real(host))
    server = EmbeddedRedis()
    try:
        server.start()
        assert server.port != taken.getsockname()[1] and ping("127.0.0.1", server.port)
        pid, port, root = server.pid, server.port, server.root
    finally:
        server.stop()
        taken.close()
    assert not alive(pid) and not ping("127.0.0.1", port)
    assert not root.exists()  # its temporary folder went with it


def test_missing_server_and_bad_worker_count_are_named(tmp_path):
    with pytest.raises(InputError, match="redis-server.*make redis"):
        find_redis_server(tmp_path / "redis-server")
    config = WorkerConfig("redis://127.0.0.1:1/0", "redis://127.0.0.1:1/1", tmp_path)
    with pytest.raises(InputError, match="at least one worker"):
        CeleryWorkers(config, 0)


def test_the_config_module_points_the_workers_at_the_broker(tmp_path):
    config = WorkerConfig("redis://127.0.0.1:6390/0", "redis://127.0.0.1:6390/1", tmp_path)
    folder = write_config_module(config)
    spec = importlib.util.spec_from_file_location("cfg", folder / "dagster_celery_config.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.broker_url == config.broker_url
    assert module.result_backend == config.backend_url
    assert module.worker_prefetch_multiplier == 1  # a busy worker reserves no second step
