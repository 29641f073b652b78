"""The tiny sample's three variants plus a prepared dataset for search tests (custom
variants are written from it), and a small, quick search space."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ocog_lib.search.bayes import BayesianOptions
from ocog_lib.search.space import SearchSpace
from ocog_lib.settings import Settings
from tests.support.benchdata import make_bench_variants

QUICK = dict(seconds=0.2)  # steady-state seconds per trial
SMALL = SearchSpace(max_workers=1, block_sizes=(256, 512))


def search_settings(root: Path) -> Settings:
    s = make_bench_variants(root, 512)
    shutil.copytree(s.variant_dir("sample", "optimal_local"), s.prepared_dir("sample"))
    return s


def quick_options(**kw) -> BayesianOptions:
    return BayesianOptions(**{"space": SMALL, "warmup_seconds": 0.05, **kw})


@pytest.fixture(scope="module")
def search_data(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """One per test module; its variants are read-only, its results file is shared."""
    return search_settings(tmp_path_factory.mktemp("search"))


@pytest.fixture
def fresh_search_data(tmp_path: Path) -> Settings:
    """The test's own copy, for tests that write variants or count rows."""
    return search_settings(tmp_path)
