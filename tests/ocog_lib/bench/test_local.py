"""The benchmark harness keeps its JSON contract and its ratios add up (no speed targets)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, replace

import pytest

from ocog_lib.bench.config import CompareConfig
from ocog_lib.bench.local import compare, format_scaling
from ocog_lib.bench.rows import BenchRow, Comparison, format_comparison, result_rows_for_db
from ocog_lib.data.lineage import verify_folder
from ocog_lib.data.locate import bench_files
from ocog_lib.errors import InputError
from tests.support.benchdata import PROFILES, make_bench_variants

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
    return make_bench_variants(tmp_path_factory.mktemp("benchdata"))


def test_compare_rows_keep_the_contract(settings):
    cfg = CompareConfig(
        repeats=1, seconds=0.3, step_ms=20, best_reuse=4, patch_size=128, batch_size=8, cache_mb=8
    )
    comparison = compare(cfg, settings)
    assert isinstance(comparison, Comparison) and comparison.storage == "local"
    assert all(isinstance(r, BenchRow) for r in comparison.rows)
    result = comparison.to_dict()
    rows = result["rows"]
    json.dumps(result)  # one JSON object
    assert list(result) == ["run_id", "dataset", "storage", "files", "decoded_gib", "cache_mb",
                            "compare", "rows"]  # fmt: skip
    assert result["compare"] == asdict(cfg)
    printed = format_comparison(comparison).splitlines()
    assert printed[0].startswith("dataset sample: ") and printed[1].split()[:2] == [
        "name", "variant"] and len(printed) == 3 + len(rows)  # fmt: skip
    assert all(ROW_KEYS <= set(r) for r in rows)
    names = {(r["name"], r["variant"]) for r in rows}
    assert ("reference default", "default") in names
    assert ("reference local_optimal", "optimal_local") in names
    for v in PROFILES:
        assert ("ocog random", v) in names and ("ocog block", v) in names
        assert ("ocog random float32", v) in names  # the toolkit's output dtype, beside ours
    f32 = next(r for r in rows if r["name"] == "ocog block float32")
    assert f32["config"]["dtype"] == "float32" and f32["config"]["patches_per_tile"] == 1
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
            c = r["config"]
            assert r["ratio_vs_cache_limit"] == pytest.approx(
                r["samples_per_s"] / c["cache_limit_sps"])
            if lim["loader"] == "decode_limit":
                assert c["min_decodes_per_sample"] > 0 and c["decodes_per_sample"] > 0
                assert c["cache_limit_sps"] == pytest.approx(
                    lim["samples_per_s"] * lim["config"]["tiles_per_sample"]
                    / c["min_decodes_per_sample"])
            else:  # uncompressed: no decodes, the memory limit
                assert c["cache_limit_sps"] == lim["samples_per_s"]
    waits = [r for r in rows if r.get("data_wait_fraction") is not None]
    assert len(waits) == 3 and all(0 <= r["data_wait_fraction"] <= 1 for r in waits)
    db_rows = result_rows_for_db(comparison, {"cores": 2}, "abc")
    assert len(db_rows) == len(rows) and all(r["run_id"] == result["run_id"] for r in db_rows)
    assert list(db_rows[0]) == [
        "run_id", "ts", "name", "dataset", "variant", "storage", "sampler", "loader",
        "samples_per_s", "mb_per_s", "ratio_vs_reference_default", "ratio_vs_limit",
        "ratio_vs_cache_limit", "cache_hit_rate", "peak_rss_mb", "peak_pss_mb",
        "data_wait_fraction", "startup_s", "batch_mix", "rtt_ms", "cap_mb_s", "config", "host",
        "git_sha", "content_hash",
    ]  # fmt: skip
    # lineage: each row names the bytes it read (these folders predate content hashes: their
    # content.json was made on the first read)
    hashes = {v: verify_folder(settings.variant_dir("sample", v)) for v in PROFILES}
    assert all(r["content_hash"] == hashes[r["variant"]] for r in db_rows)


def test_missing_variant_names_what_to_materialize(settings):
    with pytest.raises(InputError, match=r"cog_variants\[sample\|zstd_fast\]"):
        bench_files("sample", "zstd_fast", settings)


def test_peers_are_rows_beside_ocog_on_the_same_windows(settings):
    cfg = CompareConfig(repeats=1, seconds=0.3, step_ms=0, best_reuse=1, patch_size=128,
                        batch_size=8, cache_mb=8, variants=("default",), samplers=("random",),
                        peers=("tuned rasterio",))  # fmt: skip
    comparison = compare(cfg, settings)
    rows = comparison.to_dict()["rows"]
    peer = next(r for r in rows if r["loader"] == "peer")
    ours = next(r for r in rows if r["name"] == "ocog random")
    assert peer["name"] == "peer tuned rasterio" and peer["samples_per_s"] > 0
    assert (peer["variant"], peer["sampler"]) == (ours["variant"], ours["sampler"])
    assert peer["config"]["sampler_as_run"] == "ocog's windows"
    assert peer["ratio_vs_limit"] == pytest.approx(peer["samples_per_s"] / next(
        r["samples_per_s"] for r in rows if r["name"] == "decode limit random"))
    assert "skipped_peers" not in comparison.to_dict()


def test_a_threads_sweep_adds_rows_with_cores_and_efficiency(settings):
    cfg = CompareConfig(repeats=1, seconds=0.3, step_ms=0, best_reuse=1, patch_size=128,
                        batch_size=8, cache_mb=8, variants=("default",), out_dtypes=(),
                        samplers=("random",), sweep_threads=(1, 2))  # fmt: skip
    comparison = compare(cfg, settings)
    rows = comparison.to_dict()["rows"]
    sweep = [r for r in rows if r["config"].get("scaling")]
    assert [(r["name"], r["config"]["threads"], r["config"]["workers"]) for r in sweep] == [
        ("ocog random threads 1", 1, 0), ("ocog random threads 2", 2, 0)]
    cores = os.cpu_count()
    for r in sweep:
        c = r["config"]
        assert c["machine_cores"] == cores and c["cores_used"] == min(cores, c["threads"])
        assert c["samples_per_s_per_core"] == pytest.approx(r["samples_per_s"] / c["cores_used"])
        one = sweep[0]  # the 1-core baseline comes first
        assert (one["config"]["threads"], one["config"]["scaling_efficiency"]) == (1, 1.0)
        assert c["scaling_efficiency"] == pytest.approx(
            r["samples_per_s"] / (c["cores_used"] * one["samples_per_s"]))
    assert "ocog random" in {r["name"] for r in rows}  # today's rows stay
    assert all("scaling_efficiency" not in r["config"] for r in rows if r not in sweep)
    assert "scaling with cores" in format_scaling(comparison)
    assert format_scaling(replace(comparison, rows=())) == ""


def test_sweep_settings_put_the_one_core_baseline_first():
    assert CompareConfig().scaling_settings() == ()
    assert CompareConfig(sweep_threads=(4, 2)).scaling_settings() == ((1, 0), (4, 0), (2, 0))
    assert CompareConfig(sweep_workers=(2, 1)).scaling_settings() == ((1, 1), (1, 2))
    assert CompareConfig(sweep_threads=(1, 2), sweep_workers=(0, 2)).scaling_settings() == (
        (1, 0), (2, 0), (1, 2), (2, 2))  # fmt: skip
    with pytest.raises(InputError, match="sweep_threads"):
        CompareConfig(sweep_threads=(0,))
