"""One local PostgreSQL per test session (per xdist worker), stopped by PID at the end.

Skipped where PostgreSQL is not installed, except under CI (the environment variable CI
set), where its absence fails: `make test` installs it (`make postgres`)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocog_lib.errors import InputError
from ocog_lib.remote.postgres import EmbeddedPostgres, find_binaries

# a throwaway cluster: durability off, it only has to be quick on a loaded machine
FAST = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def require_postgres() -> None:
    try:
        find_binaries()
    except InputError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc}: CI must run the Postgres tests (make postgres)")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[EmbeddedPostgres]:
    """The server, in a folder of its own under /tmp that the `postgres` user can reach
    (pytest's tmp folders are 0700; PostgreSQL runs as `postgres` when we are root)."""
    require_postgres()
    root = Path(tempfile.mkdtemp(prefix="ocog-pg-"))
    root.chmod(0o755)
    server = EmbeddedPostgres(root / "postgres", settings=FAST)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
