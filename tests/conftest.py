"""Shared fixtures: one tiny `sample` dataset per test session, built from the real bands."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from ocog_lib.data.manifest import DatasetManifest

# OpenMP (torch's CPU threads) spins while it waits for work; two pytest workers and their
# subprocesses on two cores then starve each other. test_loop's training fixture beside two
# busy loops (2026-12-04): 284 s and 129 s of CPU spinning by default, 38 s and 31 s with
# PASSIVE; alone, 16 s. Set before torch loads (here, for every worker and subprocess).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

TINY_SAMPLE = dict(bench_size=512, n_bench=2, scene_size=512)

# Fixtures that start a server program outside Python (PostgreSQL, Redis, Chromium): a
# test using one is in the `server` tier (`make test-fast` leaves it out; `make test` runs
# every tier).
SERVER_FIXTURES = frozenset({"postgres_server", "redis_server", "chromium"})


def tier_marks(fixturenames: list[str] | tuple[str, ...]) -> set[str]:
    """The tiers a test joins by the fixtures it uses (besides its own `slow` mark)."""
    return {"server"} if SERVER_FIXTURES.intersection(fixturenames) else set()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for mark in tier_marks(getattr(item, "fixturenames", ())):
            item.add_marker(mark)


@dataclass(frozen=True)
class TinySample:
    raw: dict[str, Path]  # tile id -> raw scene
    prepared: Path  # folder holding manifest.json
    manifest: DatasetManifest


def build_tiny_sample(root: Path) -> TinySample:
    from ocog_lib.data.sample import build_raw_scene, prepare_sample, sample_tiles

    raw = {t: build_raw_scene(t, root / "raw" / f"{t}.tif") for t in sample_tiles()}
    manifest = prepare_sample(raw, root / "prepared", **TINY_SAMPLE)
    return TinySample(raw=raw, prepared=root / "prepared", manifest=manifest)


@pytest.fixture(scope="session")
def tiny_sample(tmp_path_factory: pytest.TempPathFactory) -> TinySample:
    """The sample with 512 px scenes and two 512 px bench scenes; treat it as read-only."""
    return build_tiny_sample(tmp_path_factory.mktemp("tiny_sample"))


# Fixtures from tests/support, registered once for the whole suite.
from tests.support.hdf5pkg import package  # noqa: E402, F401
from tests.support.s3 import endpoint_settings, objects, s3, s3_env  # noqa: E402, F401
from tests.support.variants import train_settings, train_variants  # noqa: E402, F401
