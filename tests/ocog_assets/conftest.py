"""The Dagster layer's shared fixtures: one instance as `dagster dev` would see it, all in tmp."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def dagster_home(tmp_path) -> Path:
    """A tmp DAGSTER_HOME holding the repo's dagster.yaml (storage, pools, concurrency)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    return home


@pytest.fixture
def instance(dagster_home, tmp_path, monkeypatch):
    """A real instance on `dagster_home`; data, DuckDB and Optuna storage in tmp/data."""
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.setenv("OCOG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("OCOG_DUCKDB", raising=False)
    monkeypatch.delenv("OCOG_OPTUNA_STORAGE", raising=False)
    with dg.DagsterInstance.get() as inst:
        yield inst


@pytest.fixture
def sample_paths(train_settings, tiny_sample):
    """OcogPaths over the tiny sample's variants, its prepared manifest (class names) and a
    fresh results file: what the embeddings and compression assets read."""
    from ocog_assets.defs.common.resources import OcogPaths

    (train_settings.data_dir / "prepared").mkdir()
    (train_settings.data_dir / "prepared" / "sample").symlink_to(tiny_sample.prepared)
    return OcogPaths(data_dir=str(train_settings.data_dir),
                     results_db=str(train_settings.results_db))  # fmt: skip
