"""hdf5_packages in-process on a real Dagster instance: metadata, and the pixel check."""

from __future__ import annotations

import os
import shutil

import dagster as dg
import h5py
import pytest

from ocog_assets import definitions
from ocog_assets.defs.common.resources import OcogPaths
from ocog_assets.defs.data.assets import prepared_datasets
from ocog_assets.defs.packaging.assets import MATCHES_COGS, Hdf5PackageConfig, hdf5_packages
from ocog_assets.defs.variants.assets import cog_variants
from ocog_lib.hdf5.validate import validate_package


@pytest.fixture
def data_dir(tiny_sample, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_sample.prepared, root / "prepared" / "sample")
    return root


def _run(data_dir, **config) -> dg.ExecuteInProcessResult:
    with dg.DagsterInstance.ephemeral() as instance:
        return dg.materialize(
            [hdf5_packages],
            partition_key="sample",
            instance=instance,
            resources={"paths": OcogPaths(data_dir=str(data_dir))},
            run_config=dg.RunConfig({"hdf5_packages": Hdf5PackageConfig(**config)}),
            raise_on_error=False,
        )


def _check(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.check_name == MATCHES_COGS
    return evaluation


def test_the_asset_is_in_the_code_location_after_its_sources():
    graph = definitions.defs.resolve_asset_graph()
    parents = graph.get(hdf5_packages.key).parent_keys
    assert parents == {prepared_datasets.key, cog_variants.key}


def test_package_metadata_and_a_passing_then_failing_pixel_check(data_dir):
    result = _run(data_dir, patch_size=128, split_block=256, check_samples=1000)
    assert result.success
    meta = result.asset_materializations_for_node("hdf5_packages")[0].metadata
    path = meta["path"].path
    info = validate_package(path)
    assert path == str(data_dir / "hdf5" / "sample" / "data_sample.h5")
    assert meta["samples"].value == info.samples == 32  # two 512 px scenes, 128 px grid
    assert meta["h5_bytes"].value < meta["bytes"].value
    assert meta["ratio_to_cog_bytes"].value > 0 and meta["compression"].value == "gzip"
    assert sum(meta["splits"].value.values()) == info.samples
    assert not meta["skipped"].value
    evaluation = _check(result)
    assert evaluation.passed and evaluation.metadata["checked"].value == info.samples

    # one pixel no longer matches its COG, with size and mtime kept: the lineage check's
    # cheap test passes and the package is reused, so the pixel check must catch it
    stat = os.stat(path)
    with h5py.File(path, "r+") as f:
        f["image"][3, 0, 0, 0] ^= 1
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = _run(data_dir, patch_size=128, split_block=256, check_samples=1000)
    assert again.asset_materializations_for_node("hdf5_packages")[0].metadata["skipped"].value
    evaluation = _check(again)
    assert not evaluation.passed
    (line,) = evaluation.metadata["mismatches"].value
    assert line.startswith("sample 3 (") and "image differs" in line
