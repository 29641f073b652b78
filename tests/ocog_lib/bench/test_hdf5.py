"""HDF5 bench rows: BenchRow-shaped, over the engine's own windows, ready for compare()."""

from __future__ import annotations

from dataclasses import asdict, fields

import h5py
import numpy as np
import pytest

from ocog_lib.bench.config import CompareConfig, Hdf5BenchConfig
from ocog_lib.bench.hdf5 import add_hdf5_rows, hdf5_rows
from ocog_lib.bench.measure import length_for
from ocog_lib.bench.rows import BenchRow, Comparison
from ocog_lib.data.lineage import package_hash
from ocog_lib.data.locate import bench_files
from ocog_lib.settings import Settings
from ocog_lib.stream.config import StreamConfig
from ocog_lib.stream.dataset import CogStream
from tests.support.variants import prepared_with_default_variant


@pytest.fixture(scope="module")
def settings(tiny_sample, tmp_path_factory) -> Settings:
    """A data folder with the tiny sample prepared and its default variant written."""
    return prepared_with_default_variant(tiny_sample, tmp_path_factory.mktemp("hdf5_bench"))


def test_rows_have_the_benchrow_shape_and_read_the_engines_patches(settings):
    cfg = CompareConfig.quick(samplers=("random", "block"), seconds=0.3, step_ms=0,
                              batch_size=8)
    hcfg = Hdf5BenchConfig(compressions=("lzf", "none"), samples=48, workers=1)
    rows = hdf5_rows(cfg, hcfg, settings)
    assert [(r.sampler, r.variant) for r in rows] == [
        ("random", "hdf5_lzf"), ("random", "hdf5_none"),
        ("block", "hdf5_lzf"), ("block", "hdf5_none"),
    ]
    images, masks = bench_files("sample", "default", settings)
    for row in rows:
        assert isinstance(row, BenchRow) and row.loader == "hdf5"
        assert row.samples_per_s > 0 and row.repeats == [row.samples_per_s]
        assert row.mb_per_s == pytest.approx(row.samples_per_s * 4 * 256 * 256 * 2 / 1e6)
        assert row.config["workers"] == 1 and row.config["compression"] in ("lzf", "none")
        assert row.content_hash == package_hash(row.config["package"])  # lineage: its package
        # the package holds the first windows of the engine's plain row, pixel for pixel
        engine = CogStream(images, masks, StreamConfig(
            sampler=row.sampler, patch_size=256, batch_size=48, seed=cfg.seed,
            length=length_for(cfg.seconds, 4000, cfg.batch_size)))
        first = next(iter(engine.iter_batches([engine.windows[:48]])))
        engine.close()
        with h5py.File(row.config["package"], "r") as f:
            meta = f["metadata"][()]
            got = np.stack([meta["file"], meta["row"], meta["col"]], axis=1)
            np.testing.assert_array_equal(got, engine.windows[:48])
            np.testing.assert_array_equal(f["image"][()], first["image"].numpy())
            np.testing.assert_array_equal(f["label"][:, 0], first["mask"].numpy())
    # a second run reuses the packages (export skipped on a matching fingerprint)
    again = hdf5_rows(cfg, Hdf5BenchConfig(compressions=("none",), samples=48, workers=1),
                      settings)
    assert again[0].config["package"] == rows[1].config["package"]
    assert again[0].content_hash == rows[1].content_hash
    assert len({r.content_hash for r in rows}) == len(rows)


def test_rows_join_a_compare_result_with_their_ratio(settings):
    cfg = CompareConfig.quick(samplers=("random",), seconds=0.2, step_ms=20, batch_size=8)
    rows = hdf5_rows(cfg, Hdf5BenchConfig(compressions=("none",), samples=32, workers=1),
                     settings)
    assert rows[0].data_wait_fraction is not None and 0 <= rows[0].data_wait_fraction <= 1
    ref = BenchRow("reference default", "reference", "default", "random", 50.0, 1.0)
    result = Comparison("r1", "sample", 0.1, 8.0, cfg, (ref,))
    result = add_hdf5_rows(result, rows)
    added = result.to_dict()["rows"][1]
    assert set(added) == {f.name for f in fields(BenchRow)}
    assert added["ratio_vs_reference_default"] == pytest.approx(rows[0].samples_per_s / 50.0)
    assert asdict(rows[0])["samples_per_s"] == added["samples_per_s"]
