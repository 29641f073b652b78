"""The suite itself must never hang: a stuck test fails with a stack dump, and no test ends
a process pool by SIGTERM (some runners ignore it in children, and the pool waits forever)."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_hanging_test_fails_with_a_stack_dump(tmp_path):
    (tmp_path / "test_hang.py").write_text(
        textwrap.dedent(
            """
            import threading

            def test_waits_forever():
                threading.Event().wait()
            """
        )
    )
    # the project's own pytest settings (timeout, method), only the limit made short
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path),
           "-o", "timeout=2", str(tmp_path / "test_hang.py")]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "Timeout" in out and "1 failed" in out, out
    assert "Event().wait()" in out, out  # where it hung, in the dump


def _pool_contexts(tree: ast.AST) -> list[int]:
    """Lines of `with ...Pool(...)` blocks: their exit calls terminate()."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.With | ast.AsyncWith):
            for item in node.items:
                call = item.context_expr
                if isinstance(call, ast.Call):
                    name = getattr(call.func, "attr", getattr(call.func, "id", ""))
                    if name == "Pool":
                        lines.append(node.lineno)
    return lines


def test_no_process_pool_is_ended_by_terminate():
    found = []
    for folder in ("ocog_lib", "ocog_assets", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            found += [f"{path.relative_to(ROOT)}:{n}" for n in _pool_contexts(
                ast.parse(path.read_text(), str(path)))]  # fmt: skip
    assert found == [], f"use pool.close(); pool.join() instead of `with Pool()`: {found}"


def test_close_and_join_ends_a_pool_whose_workers_ignore_sigterm():
    code = textwrap.dedent(
        """
        import multiprocessing, signal
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # as some runners leave their children
        pool = multiprocessing.get_context("fork").Pool(2)
        try:
            print(sum(pool.map(abs, range(-50, 50))))
        finally:
            pool.close()
            pool.join()
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(sum(abs(i) for i in range(-50, 50)))


def test_server_tests_join_the_server_tier_by_their_fixtures():
    """`make test-fast` leaves out `-m server`: a test is there by the fixtures it uses."""
    from tests.conftest import SERVER_FIXTURES, tier_marks

    assert {"postgres_server", "redis_server", "chromium"} <= SERVER_FIXTURES
    assert tier_marks(["tmp_path", "postgres_server"]) == {"server"}
    assert tier_marks(("chromium",)) == {"server"}
    assert tier_marks(["tmp_path", "tiny_sample"]) == set()
    makefile = (ROOT / "Makefile").read_text()
    fast = makefile.split("\ntest-fast:", 1)[1].split("\n\n", 1)[0]
    assert '-m "not slow and not server"' in fast
    full = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert " -m " not in full  # CI's `make test` runs every tier
