"""The one lookup of a written variant's files: which folder counts as written, which items a
role picks, when masks come along, and what training gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocog_lib.data.locate import (
    bench_files,
    variant_files,
    variant_folder,
    variant_written,
)
from ocog_lib.data.manifest import DatasetManifest, ManifestItem
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path, results_db=tmp_path / "ocog.duckdb")


def _write(settings: Settings, variant: str, items: list[ManifestItem]) -> Path:
    folder = settings.variant_dir("ds", variant)
    folder.mkdir(parents=True)
    DatasetManifest("ds", {0: "any"}, items).save(folder)
    return folder


SCENES = [ManifestItem(f"s{i}", f"scenes/s{i}.tif", f"masks/s{i}.tif", "scene") for i in (0, 1)]
BENCH = [ManifestItem("b0", "bench/b0.tif", "bench/b0_mask.tif", "bench")]


def test_a_folder_without_its_manifest_is_not_a_variant(settings):
    settings.variant_dir("ds", "half").mkdir(parents=True)  # an interrupted write
    assert not variant_written("ds", "half", settings)
    for lookup in (variant_folder, bench_files, variant_files):
        with pytest.raises(InputError, match=r"variant 'half' of 'ds' is not written yet: "
                                             r"materialize cog_variants\[ds\|half\]"):  # fmt: skip
            lookup("ds", "half", settings)
    folder = _write(settings, "v", SCENES)
    assert variant_written("ds", "v", settings) and variant_folder("ds", "v", settings) == folder


def test_bench_files_take_the_role_or_every_item(settings):
    folder = _write(settings, "v", SCENES + BENCH)
    files = bench_files("ds", "v", settings)
    assert files.images == [str(folder / "bench/b0.tif")]
    assert files.masks == [str(folder / "bench/b0_mask.tif")]
    scenes = bench_files("ds", "v", settings, role="scene")
    assert scenes.images == [str(folder / f"scenes/s{i}.tif") for i in (0, 1)]
    _write(settings, "scenes_only", SCENES)
    assert bench_files("ds", "scenes_only", settings).images == [
        str(settings.variant_dir("ds", "scenes_only") / f"scenes/s{i}.tif") for i in (0, 1)
    ]  # no bench scene: every item


def test_masks_come_only_when_every_image_has_one(settings):
    partial = [SCENES[0], ManifestItem("s9", "scenes/s9.tif", None, "scene")]
    _write(settings, "v", partial)
    images, masks = bench_files("ds", "v", settings, role="scene")
    assert len(images) == 2 and masks == []
    with pytest.raises(InputError, match="no masks for these images: cannot train"):
        variant_files("ds", "v", settings)


def test_training_gets_the_paths_under_the_variant_folder(settings):
    folder = _write(settings, "v", SCENES + BENCH)
    files = variant_files("ds", "v", settings)
    assert files.images == [str(folder / f"scenes/s{i}.tif") for i in (0, 1)]
    assert files.masks == [str(folder / f"masks/s{i}.tif") for i in (0, 1)]
    assert files.relpaths == ["scenes/s0.tif", "scenes/s1.tif", "masks/s0.tif", "masks/s1.tif"]
