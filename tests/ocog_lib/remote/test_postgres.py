"""The local PostgreSQL server: started for real, talked to, stopped by PID; the cluster
survives restarts; a taken port is retried; missing binaries and closed folders are named."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
from pathlib import Path

import psycopg
import pytest

from ocog_lib.errors import InputError
from ocog_lib.remote import postgres as pg
from ocog_lib.remote.postgres import EmbeddedPostgres, find_binaries
from tests.support.postgres import FAST, postgres_server, require_postgres  # noqa: F401
from tests.support.processes import alive


def test_server_answers_sql_and_its_urls_hold_no_password(postgres_server):  # noqa: F811
    server = postgres_server
    assert server.host == "127.0.0.1" and alive(server.pid)
    url = server.ensure_database("remote_test")
    assert server.ensure_database("remote_test") == url  # idempotent
    assert url == f"postgresql://ocog@127.0.0.1:{server.port}/remote_test"
    assert server.optuna_url("remote_test").startswith("postgresql+psycopg://ocog@")
    assert ":" not in url.split("://")[1].split("@")[0]  # user only, no password
    assert str(server.pid) in repr(server) and "@" not in repr(server)
    with psycopg.connect(url) as con:
        con.execute("CREATE TABLE t (x int)")
        con.execute("INSERT INTO t VALUES (1), (2)")
        assert con.execute("SELECT sum(x) FROM t").fetchone() == (3,)
        assert con.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
    with pytest.raises(InputError, match="lowercase"):
        server.ensure_database('x"; DROP DATABASE ocog; --')


@pytest.fixture
def own_root():
    require_postgres()
    root = Path(tempfile.mkdtemp(prefix="ocog-pg-own-"))
    root.chmod(0o755)
    yield root / "postgres"
    shutil.rmtree(root, ignore_errors=True)


def test_taken_port_is_retried_data_survives_and_a_stuck_server_is_killed(own_root, monkeypatch):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    ports = iter([taken.getsockname()[1]])
    real_free_port = pg.free_port
    monkeypatch.setattr(pg, "free_port", lambda host: next(ports, None) or real_free_port(host))
    server = EmbeddedPostgres(own_root, settings=FAST)
    try:
        server.start()  # the first port is taken: started on another one
        assert server.port != taken.getsockname()[1]
        with psycopg.connect(server.url, autocommit=True) as con:
            con.execute("CREATE TABLE kept (x int)")
            con.execute("INSERT INTO kept VALUES (42)")
        first_pid = server.pid
        server.stop()
        assert not alive(first_pid)
        version = (server.cluster_dir / "PG_VERSION").stat().st_mtime_ns

        server.start()  # the same cluster, no new initdb
        assert (server.cluster_dir / "PG_VERSION").stat().st_mtime_ns == version
        with psycopg.connect(server.url) as con:
            assert con.execute("SELECT x FROM kept").fetchone() == (42,)
        # a postmaster that ignores the polite signal is killed, with its backends
        proc, server._proc = server._proc, None
        os.kill(proc.pid, signal.SIGSTOP)
        pg._stop_postmaster(proc, grace_s=0.5)
        assert not alive(proc.pid)
        with pytest.raises(ProcessLookupError):
            os.killpg(proc.pid, 0)
        server.start()  # and the cluster recovers from the kill
        with psycopg.connect(server.url) as con:
            assert con.execute("SELECT x FROM kept").fetchone() == (42,)
    finally:
        server.stop()
        taken.close()


def test_missing_binaries_say_how_to_install(tmp_path, monkeypatch):
    with pytest.raises(InputError, match=r"apt-get install postgresql.*make postgres"):
        find_binaries(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(pg.glob, "glob", lambda pattern: [])
    with pytest.raises(InputError, match="initdb, postgres"):
        EmbeddedPostgres(tmp_path / "pg").start()


@pytest.mark.skipif(os.geteuid() != 0, reason="the server runs as `postgres` only under root")
def test_a_folder_the_server_user_cannot_reach_is_named(tmp_path):
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    with pytest.raises(InputError, match=r"chmod o\+x"):
        pg._check_reachable(closed / "postgres", pg.server_os_user())
