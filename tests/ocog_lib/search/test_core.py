"""Search and grids on tiny rasters: named baselines, pruning and failure reasons, shared
studies across processes, custom variants written once, DuckDB rows and plots."""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import pytest
import rasterio

from ocog_lib import results
from ocog_lib.cli.main import main
from ocog_lib.cog.variants import profile_from_spec
from ocog_lib.search.core import (
    BayesianOptions,
    SearchSpace,
    TrialConfig,
    baseline_configs,
    baseline_params,
    decoded_mb,
    load_study,
    optuna_storage,
    run_bayesian,
    run_grid,
)
from ocog_lib.search.plots import png_markdown, save_grid_plots, save_study_plots
from ocog_lib.settings import Settings
from tests.support.benchdata import make_bench_variants

REPO = Path(__file__).resolve().parents[2]
QUICK = dict(seconds=0.2)
SMALL = SearchSpace(max_workers=1, block_sizes=(256, 512))


def _settings(root: Path) -> Settings:
    """The tiny sample's three variants plus a prepared dataset custom variants start from."""
    s = make_bench_variants(root, 512)
    shutil.copytree(s.variant_dir("sample", "optimal_local"), s.prepared_dir("sample"))
    return s


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Settings:
    return _settings(tmp_path_factory.mktemp("search"))


@pytest.fixture
def fresh(tmp_path) -> Settings:
    return _settings(tmp_path)


def _opts(**kw) -> BayesianOptions:
    return BayesianOptions(**{"space": SMALL, "warmup_seconds": 0.05, **kw})


def test_search_matches_or_beats_the_named_profiles(shared):
    result = run_bayesian("sample", "local", 3, 7, shared, **QUICK, options=_opts())
    labels = {t.baseline for t in result.trials if t.baseline}
    assert labels == {f"{v} {s}" for v in ("default", "optimal_local", "optimal_remote")
                      for s in ("random", "block reuse x8")}  # fmt: skip
    assert len(result.trials) == 6 + 3
    best, base = result.best, result.best_baseline
    assert base is not None and best.value >= base.value
    assert result.summary()["speedup_vs_baseline"] >= 1.0
    # no trial may hold more than a quarter of the data in its cache (docs/benchmarks.md)
    cap = decoded_mb("sample", shared) / 4
    assert all(0 < t.config["cache_mb"] <= cap for t in result.trials)

    rows = results.query(
        shared.results_db,
        "SELECT trial, state, value, mb_per_s, reason, warmup_s, seconds, params, started_at, "
        "finished_at, git_sha FROM search_trials WHERE study = ? ORDER BY trial",
        [result.study],
    )[1]
    assert [r[0] for r in rows] == [t.number for t in result.trials]
    for trial, state, value, mbps, reason, warmup, seconds, params, t0, t1, _sha in rows:
        params = json.loads(params)
        assert params["variant"] and params["sampler"] in ("random", "block")
        assert t1 >= t0
        if state == "COMPLETE":
            assert value > 0 and mbps > 0 and warmup > 0 and seconds >= QUICK["seconds"]
            assert reason is None
        else:
            assert reason, f"trial {trial} is {state} without a reason"
    # the view answers the best configuration of this dataset|storage
    cols, view = results.query(
        shared.results_db, "SELECT * FROM best_configs WHERE storage = 'local'"
    )
    row = dict(zip(cols, view[0], strict=True))
    assert row["samples_per_s"] == pytest.approx(best.value)
    assert json.loads(row["params"])["variant"] == best.config["variant"]

    plot = save_study_plots(result, shared)["trials"]
    assert Path(plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png_markdown(plot).startswith("![](data:image/png;base64,iVBOR")


def test_custom_variant_is_written_once_with_the_source_pixels(fresh):
    space = replace(SMALL, codecs=("zstd",), levels={"zstd": (1,)}, predictors=(2,),
                    block_sizes=(256,))  # fmt: skip
    result = run_bayesian("sample", "local", 2, 0, fresh, **QUICK,
                          options=_opts(space=space, baselines=False, prune=False))  # fmt: skip
    assert [t.state for t in result.trials] == ["COMPLETE", "COMPLETE"]
    name = profile_from_spec("zstd:level=1,predictor=2,block=256").name
    assert {t.config["variant"] for t in result.trials} == {name}
    folder = fresh.variant_dir("sample", name)
    written = sorted(p.name for p in folder.iterdir())
    assert written == ["bench_0.tif", "bench_0_mask.tif", "bench_1.tif", "bench_1_mask.tif",
                       "manifest.json"]  # fmt: skip
    for item in ("bench_0.tif", "bench_1.tif"):
        with rasterio.open(folder / item) as a, rasterio.open(
            fresh.prepared_dir("sample") / item
        ) as b:
            assert a.compression.name.lower() == "zstd" and a.block_shapes[0] == (256, 256)
            assert np.array_equal(a.read(), b.read())


def test_unwritable_variants_are_pruned_and_bad_configs_fail_with_reasons(fresh, tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"  # an RDB storage, as Postgres would be
    no_write = replace(SMALL, codecs=("zstd",), levels={"zstd": (3,)}, block_sizes=(256,))
    result = run_bayesian("sample", "local", 2, 0, fresh, **QUICK, storage_url=url,
                          options=_opts(space=no_write, baselines=False,
                                        write_variants=False))  # fmt: skip
    assert {t.state for t in result.trials} == {"PRUNED"}
    assert all("not written" in t.reason for t in result.trials)
    assert not fresh.variant_dir("sample", "zstd_l3_b256").exists()
    storage, where = optuna_storage(fresh, url)
    assert isinstance(storage, optuna.storages.RDBStorage) and where == url

    too_big = replace(SMALL, codecs=("none",), patch_sizes=(1024,))  # rasters are 512 px
    failed = run_bayesian("sample", "local", 1, 0, fresh, **QUICK,
                          options=_opts(space=too_big, baselines=False))  # fmt: skip
    assert [t.state for t in failed.trials] == ["FAIL"]
    assert "smaller than the patch size 1024" in failed.trials[0].reason
    rows = results.query(
        fresh.results_db,
        "SELECT study, state, reason FROM search_trials WHERE state <> 'COMPLETE' ORDER BY study",
    )[1]
    assert {(s, st) for s, st, _ in rows} == {
        (result.study, "PRUNED"), (failed.study, "FAIL")
    }  # fmt: skip
    assert all(reason for *_, reason in rows)


def test_two_processes_share_one_study(fresh):
    env = {**os.environ, "OCOG_DATA_DIR": str(fresh.data_dir), "PYTHONPATH": str(REPO)}
    env.pop("OCOG_DUCKDB", None)
    env.pop("OCOG_OPTUNA_STORAGE", None)
    args = ["search", "bayesian", "--study", "shared", "--trials", "2", "--seconds", "0.2",
            "--warmup", "0.05", "--no-baselines", "--max-workers", "0", "--json"]  # fmt: skip
    code = f"import sys; from ocog_lib.cli.main import main; sys.exit(main({args!r}))"
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, cwd=fresh.data_dir,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert json.loads(out.splitlines()[-1])["study"] == "shared"
    study = load_study("shared", fresh)
    assert len(study.trials) == 4
    assert len({t.worker for t in study.trials}) == 2  # both processes ran trials
    assert (fresh.data_dir / "optuna.journal").exists()
    n = results.query(fresh.results_db, "SELECT count(*) FROM search_trials WHERE study = ?",
                      ["shared"])[1][0][0]  # fmt: skip
    assert n == 4


def test_baseline_params_reproduce_the_baseline_config(shared):
    for storage in ("local", "remote"):
        for label, cfg in baseline_configs("sample", storage, shared, SMALL):
            trial = optuna.trial.FixedTrial(baseline_params(cfg, storage, SMALL))
            assert SMALL.suggest(trial, storage) == replace(cfg, variant=None), label


def test_trial_config_specs_and_normalization():
    cfg = TrialConfig(codec="LERC_ZSTD", level=9, predictor=2, block_size=256, sampler="random",
                      patches_per_tile=8).normalized()  # fmt: skip
    assert (cfg.codec, cfg.predictor, cfg.patches_per_tile) == ("lerc_zstd", None, 1)
    prof = profile_from_spec(cfg.profile_spec())
    assert (prof.compression, prof.level, prof.blocksize, prof.max_z_error) == (
        "LERC_ZSTD", 9, 256, 0.0)  # fmt: skip
    none = TrialConfig(codec="none", level=6, predictor=2).normalized()
    assert none.profile_spec() == "none:block=512" and none.variant_name() == "none_b512"
    with pytest.raises(Exception, match="codec 'lzw'"):
        TrialConfig(codec="lzw").normalized()


def test_grid_cells_mean_std_and_invalid_cells(shared, capsys, monkeypatch):
    result = run_grid("sample", "local", "compression", ["none", "deflate"], "level",
                      ["1", "30"], 2, shared, **QUICK, warmup_seconds=0.05)  # fmt: skip
    by = {(c.value1, c.value2): c for c in result.cells}
    assert "level 30 outside 1..12" in by[("deflate", "30")].reason  # DEFLATE tops out at 12
    measured = [c for c in result.cells if c.reason is None]
    assert len(measured) == 3 and all(len(c.samples_per_s) == 2 for c in measured)
    rows = results.query(
        shared.results_db,
        "SELECT value1, value2, repeats, mean_samples_per_s, std_samples_per_s, config "
        "FROM grid_cells WHERE grid_id = ?",
        [result.grid_id],
    )[1]
    assert len(rows) == 4
    for v1, v2, n, mean, std, config in rows:
        runs = json.loads(config)["samples_per_s"]
        assert n == len(runs)
        if runs:
            assert mean == pytest.approx(np.mean(runs)) and std == pytest.approx(np.std(runs))
        else:
            assert (v1, v2, mean) == ("deflate", "30", None)
    heat = save_grid_plots(result, shared)["heatmap"]
    assert Path(heat).parent == shared.data_dir / "search" / "sample" / "local"

    monkeypatch.setenv("OCOG_DATA_DIR", str(shared.data_dir))
    monkeypatch.delenv("OCOG_DUCKDB", raising=False)
    assert main(["search", "grid", "--var1", "sampler", "--var2", "block_size",
                 "--values2", "256", "--repeats", "1", "--seconds", "0.2", "--warmup",
                 "0.05", "--json"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert {(c["value1"], c["value2"]) for c in out["cells"]} == {("random", "256"),
                                                                  ("block", "256")}  # fmt: skip
    assert all(c["mean_samples_per_s"] > 0 for c in out["cells"])


def test_unknown_grid_variable_and_storage_are_named(shared):
    with pytest.raises(Exception, match="grid variable 'colour'"):
        run_grid("sample", "local", "colour", ["a"], "block_size", ["256"], 1, shared)
    with pytest.raises(Exception, match="storage 'ftp'"):
        run_bayesian("sample", "ftp", 1, 0, shared, **QUICK, options=_opts(baselines=False))


def test_one_remote_trial_through_the_shaper(shared):
    space = replace(SMALL, codecs=("none",), block_sizes=(256,), max_workers=0)
    result = run_bayesian("sample", "remote", 1, 0, shared, **QUICK,
                          options=_opts(space=space, baselines=False))  # fmt: skip
    (trial,) = result.trials
    assert trial.state == "COMPLETE" and trial.value > 0
    assert 8 <= trial.config["io_threads"] <= 128
