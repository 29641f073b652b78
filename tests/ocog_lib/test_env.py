"""ocog_lib.env: the only writer of os.environ; every change is undone after its block."""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from ocog_lib.env import exact_env, gdal_cache_of_config, scoped_env
from tests.support.rasters import real_pixels, write_raster

REPO = Path(__file__).resolve().parents[2]
SET = "OCOG_TEST_ENV_SET"
ABSENT = "OCOG_TEST_ENV_ABSENT"


@pytest.fixture
def _env(monkeypatch):
    monkeypatch.setenv(SET, "before")
    monkeypatch.delenv(ABSENT, raising=False)


def _now() -> dict[str, str]:
    return dict(os.environ)  # taken in the test's call phase (pytest sets PYTEST_CURRENT_TEST)


def test_scoped_env_sets_and_restores_present_absent_and_unset_keys(_env):
    env = _now()
    with scoped_env({SET: "inside"}, **{ABSENT: "new"}):
        assert os.environ[SET] == "inside" and os.environ[ABSENT] == "new"
    assert dict(os.environ) == env
    with scoped_env({SET: None, ABSENT: None}):  # None: unset inside the block
        assert SET not in os.environ and ABSENT not in os.environ
    assert dict(os.environ) == env and os.environ[SET] == "before"


def test_nested_blocks_restore_in_order(_env):
    env = _now()
    with scoped_env({SET: "outer", ABSENT: "outer"}):
        with scoped_env({SET: "inner", ABSENT: None}):
            assert os.environ[SET] == "inner" and ABSENT not in os.environ
        assert os.environ[SET] == "outer" and os.environ[ABSENT] == "outer"
    assert dict(os.environ) == env


def test_an_exception_still_restores(_env):
    env = _now()
    with pytest.raises(RuntimeError, match="boom"), scoped_env({SET: None, ABSENT: "x"}):
        raise RuntimeError("boom")
    assert dict(os.environ) == env


def test_exact_env_is_exactly_the_mapping_inside(_env):
    env = _now()
    with exact_env({ABSENT: "only"}):
        assert dict(os.environ) == {ABSENT: "only"}
    assert dict(os.environ) == env


class _LocalFiles:
    """search.measure_config's file source, for one tiny local COG."""

    def __init__(self, path: Path):
        self.path = path

    def files(self, _cfg):
        return [str(self.path)], []


def test_a_trial_leaves_gdal_cachemax_as_it_found_it(tmp_path, monkeypatch):
    """measure_config sets GDAL_CACHEMAX for the loader; the next job in the same process
    (`ocog demo`) must not inherit it."""
    from ocog_lib.search.measure import measure_config
    from ocog_lib.search.space import TrialConfig

    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    before = dict(os.environ)
    path = write_raster(tmp_path / "a.tif", real_pixels(2, 128, 128, "uint16"), blocksize=64)
    cfg = TrialConfig(patch_size=32, batch_size=4, block_size=64, threads=1, cache_mb=7.0)
    m = measure_config(_LocalFiles(path), cfg, seconds=0.05, warmup_seconds=0.0)
    assert m.samples > 0
    assert dict(os.environ) == before


_WRITERS = {"update", "pop", "popitem", "setdefault", "clear", "__setitem__", "__delitem__"}


def _is_environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ"
            and isinstance(node.value, ast.Name) and node.value.id == "os")  # fmt: skip


def _writes(tree: ast.AST) -> list[int]:
    """Lines that write os.environ (or import its writers under another name)."""
    lines = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = node.targets
        for t in targets:
            if _is_environ(t) or (isinstance(t, ast.Subscript) and _is_environ(t.value)):
                lines.append(node.lineno)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            f = node.func
            if (f.attr in _WRITERS and _is_environ(f.value)) or (
                f.attr in ("putenv", "unsetenv")
                and isinstance(f.value, ast.Name)
                and f.value.id == "os"
            ):
                lines.append(node.lineno)
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            if {a.name for a in node.names} & {"environ", "putenv", "unsetenv"}:
                lines.append(node.lineno)
    return sorted(lines)


def test_the_guard_sees_each_kind_of_write():
    src = (
        "import os\nos.environ['A'] = '1'\nos.environ['A'] += '1'\ndel os.environ['A']\n"
        "os.environ.update(A='1')\nos.environ.pop('A')\nos.environ.setdefault('A', '')\n"
        "os.environ.clear()\nos.environ.__setitem__('A', '1')\nos.putenv('A', '1')\n"
        "os.unsetenv('A')\nfrom os import environ\nos.environ.get('A')\nx = os.environ['A']\n"
    )
    assert _writes(ast.parse(src)) == list(range(2, 13))


def test_only_ocog_lib_env_writes_os_environ():
    env_module = REPO / "ocog_lib" / "env.py"
    offenders = []
    for package in ("ocog_lib", "ocog_assets"):
        for path in sorted((REPO / package).rglob("*.py")):
            if path == env_module:
                continue
            for line in _writes(ast.parse(path.read_text(), str(path))):
                offenders.append(f"{path.relative_to(REPO)}:{line}")
    assert offenders == [], "write os.environ through ocog_lib.env instead"


@dataclass(frozen=True)
class _Budget:
    cache_mb: float


def test_a_benchmark_gets_its_configs_gdal_cache_and_leaves_it(monkeypatch):
    monkeypatch.setenv("GDAL_CACHEMAX", "5")

    @gdal_cache_of_config
    def bench(cfg, fail=False):
        if fail:
            raise RuntimeError("measurement failed")
        return os.environ["GDAL_CACHEMAX"]

    assert bench(_Budget(128.0)) == "128"
    assert os.environ["GDAL_CACHEMAX"] == "5"
    with pytest.raises(RuntimeError):
        bench(_Budget(64.0), fail=True)
    assert os.environ["GDAL_CACHEMAX"] == "5"
