"""The benchmark harness keeps its JSON contract and its ratios add up (no speed targets)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ocog_lib.bench import CompareConfig, bench_files, compare, result_rows_for_db
from ocog_lib.data.manifest import DatasetManifest, ManifestItem
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings
from tests.ocog_lib.stream.rasters import real_pixels, write_raster

PROFILES = {
    "default": dict(compress="DEFLATE", level=6, blocksize=256),
    "optimal_local": dict(compress="NONE", blocksize=256),
    "optimal_remote": dict(compress="LERC_ZSTD", max_z_error=0, blocksize=256),
}
ROW_KEYS = {
    "name",
    "variant",
    "samples_per_s",
    "mb_per_s",
    "ratio_vs_reference_default",
    "ratio_vs_limit",
    "cache_hit_rate",
    "peak_rss_mb",
    "config",
}


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    root = tmp_path_factory.mktemp("benchdata")
    s = Settings(data_dir=root, results_db=root / "ocog.duckdb")
    for variant, opts in PROFILES.items():
        folder = s.variant_dir("sample", variant)
        folder.mkdir(parents=True)
        items = []
        for i in range(2):
            arr = real_pixels(4, 768, 768, "uint16", seed=i)
            write_raster(folder / f"bench_{i}.tif", arr, **opts)
            labels = (arr[3] > arr[2]).astype(np.uint8)[None]
            write_raster(folder / f"bench_{i}_mask.tif", labels, compress="DEFLATE", blocksize=256)
            items.append(
                ManifestItem(f"bench_{i}", f"bench_{i}.tif", f"bench_{i}_mask.tif", "bench")
            )
        DatasetManifest("sample", {0: "other", 1: "vegetation"}, items).save(folder)
    return s


def test_compare_rows_keep_the_contract(settings):
    cfg = CompareConfig(
        repeats=1, seconds=0.3, step_ms=20, best_reuse=4, patch_size=128, batch_size=8, cache_mb=8
    )
    result = compare(cfg, settings)
    rows = result["rows"]
    json.dumps(result)  # one JSON object
    assert all(ROW_KEYS <= set(r) for r in rows)
    names = {(r["name"], r["variant"]) for r in rows}
    assert ("reference default", "default") in names
    assert ("reference local_optimal", "optimal_local") in names
    for v in PROFILES:
        assert ("ocog random", v) in names and ("ocog block", v) in names
    assert ("memory limit block", "optimal_local") in names
    assert ("decode limit random", "default") in names
    ref = next(r for r in rows if r["name"] == "reference default")
    for r in rows:
        assert r["samples_per_s"] > 0
        assert r["ratio_vs_reference_default"] == pytest.approx(
            r["samples_per_s"] / ref["samples_per_s"]
        )
        if r["loader"] == "ocog":
            lim = next(
                x
                for x in rows
                if x["loader"].endswith("limit")
                and x["variant"] == r["variant"]
                and x["sampler"] == r["sampler"]
            )
            assert r["ratio_vs_limit"] == pytest.approx(r["samples_per_s"] / lim["samples_per_s"])
            assert 0 <= r["cache_hit_rate"] <= 1 and 0 < r["batch_mix"] <= 1
    waits = [r for r in rows if r.get("data_wait_fraction") is not None]
    assert len(waits) == 3 and all(0 <= r["data_wait_fraction"] <= 1 for r in waits)
    db_rows = result_rows_for_db(result, {"cores": 2}, "abc")
    assert len(db_rows) == len(rows) and all(r["run_id"] == result["run_id"] for r in db_rows)


def test_missing_variant_names_what_to_materialize(settings):
    with pytest.raises(InputError, match=r"cog_variants\[sample\|zstd_fast\]"):
        bench_files("sample", "zstd_fast", settings)
