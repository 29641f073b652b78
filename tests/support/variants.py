"""Variants of the tiny sample: a data folder for one module, or the training ones per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ocog_lib.cog.profiles import resolve_profile
from ocog_lib.cog.write import write_variant
from ocog_lib.data.manifest import DatasetManifest
from ocog_lib.settings import Settings


def prepared_with_default_variant(tiny_sample, root: Path) -> Settings:
    """A data folder with the tiny sample prepared and its default variant written (no
    checks: the variant tests check)."""
    settings = Settings(data_dir=root, results_db=root / "ocog.duckdb")
    shutil.copytree(tiny_sample.prepared, settings.prepared_dir("sample"))
    manifest = DatasetManifest.load(settings.prepared_dir("sample"))
    write_variant(manifest, resolve_profile("default"), settings.variant_dir("sample", "default"),
                  check=False)  # fmt: skip
    return settings


def write_training_variants(tiny_sample, root: Path, variants=("default", "optimal_local")
                            ) -> Settings:
    settings = Settings(data_dir=root / "data", results_db=root / "ocog.duckdb")
    for v in variants:
        write_variant(tiny_sample.manifest, resolve_profile(v), settings.variant_dir("sample", v))
    return settings


def sharing_variants(settings: Settings, folder: Path, db_name: str = "other.duckdb"
                     ) -> Settings:  # fmt: skip
    """Another data folder (and results file) over the same variants: a second, separate
    run on the same data."""
    folder.mkdir()
    (folder / "variants").symlink_to(settings.data_dir / "variants", target_is_directory=True)
    return Settings(data_dir=folder, results_db=folder.parent / db_name)


def single_s2_scene(tiny_sample, root: Path, variant: str, scene_size: int = 768) -> Settings:
    """The tiny sample's Sentinel-2 scene alone, prepared at `scene_size` px, one variant
    written: enough patches of real surfaces for a learning test."""
    from ocog_lib.data.sample import prepare_sample

    tile = next(i.tile_id for i in tiny_sample.manifest.items
                if i.role == "scene" and i.sensor == "sentinel-2")  # fmt: skip
    manifest = prepare_sample({tile: tiny_sample.raw[tile]}, root / "prepared", bench_size=16,
                              n_bench=0, scene_size=scene_size)  # fmt: skip
    settings = Settings(data_dir=root / "data", results_db=root / "ocog.duckdb")
    write_variant(manifest, resolve_profile(variant), settings.variant_dir("sample", variant),
                  check=False)  # fmt: skip
    return settings


@pytest.fixture(scope="session")
def train_variants(tiny_sample, tmp_path_factory) -> Settings:
    """The tiny sample's default and optimal_local variants; treat as read-only."""
    return write_training_variants(tiny_sample, tmp_path_factory.mktemp("train_variants"))


@pytest.fixture
def train_settings(train_variants, tmp_path) -> Settings:
    """The shared variants with this test's own results file and training folder."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "variants").symlink_to(train_variants.data_dir / "variants", target_is_directory=True)
    return Settings(data_dir=data, results_db=tmp_path / "ocog.duckdb")
