"""The serve tests' shared server: a real `ocog serve` process per test module over a
small derived time stack (3 dates, 256 px)."""

from __future__ import annotations

import pytest

from tests.support.serving import running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    from ocog_lib.data.timestack import build_time_stack

    root = tmp_path_factory.mktemp("serve")
    stack = build_time_stack(root / "stack", dates=3, size=256)
    with running_server(root, stack, "--max-concurrent", "2") as srv:
        yield srv
