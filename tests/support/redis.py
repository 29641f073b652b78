"""One local Redis per test session (per xdist worker), stopped by PID at the end.

Skipped where redis-server is not installed, except under CI (the environment variable CI
set), where its absence fails: `make test` installs it (`make redis`)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from ocog_lib.errors import InputError
from ocog_lib.remote.redis import EmbeddedRedis, find_redis_server


def require_redis() -> None:
    try:
        find_redis_server()
    except InputError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc}: CI must run the Redis and Celery tests (make redis)")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    """The server in a temporary folder of its own (removed when it stops)."""
    require_redis()
    server = EmbeddedRedis()
    try:
        server.start()
        yield server
    finally:
        server.stop()
