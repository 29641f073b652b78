"""The TPE study: named baselines first, pruning and failure reasons, shared studies
across processes, DuckDB rows and the trial plot."""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import optuna
import pytest

from ocog_lib import results
from ocog_lib.search.bayes import load_study, optuna_storage, run_bayesian
from ocog_lib.search.plots import png_markdown, save_study_plots
from ocog_lib.search.runs import bayesian_with_plots
from ocog_lib.search.space import decoded_mb
from tests.support.search import QUICK, SMALL, quick_options

REPO = Path(__file__).resolve().parents[3]


def test_search_matches_or_beats_the_named_profiles(search_data):
    result = bayesian_with_plots("sample", "local", 3, 7, search_data, **QUICK,
                                 options=quick_options())  # fmt: skip
    labels = {t.baseline for t in result.trials if t.baseline}
    assert labels == {f"{v} {s}" for v in ("default", "optimal_local", "optimal_remote")
                      for s in ("random", "block reuse x8")}  # fmt: skip
    assert len(result.trials) == 6 + 3
    best, base = result.best, result.best_baseline
    assert base is not None and best.value >= base.value
    assert result.summary()["speedup_vs_baseline"] >= 1.0
    # no trial may hold more than a quarter of the data in its cache (docs/benchmarks.md)
    cap = decoded_mb("sample", search_data) / 4
    assert all(0 < t.config["cache_mb"] <= cap for t in result.trials)

    rows = results.query(
        search_data.results_db,
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
        search_data.results_db, "SELECT * FROM best_configs WHERE storage = 'local'"
    )
    row = dict(zip(cols, view[0], strict=True))
    assert row["samples_per_s"] == pytest.approx(best.value)
    assert json.loads(row["params"])["variant"] == best.config["variant"]

    plot = result.plots["trials"]
    assert plot == save_study_plots(result, search_data)["trials"]
    assert Path(plot).parent == search_data.data_dir / "search" / "sample" / "local"
    assert Path(plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png_markdown(plot).startswith("![](data:image/png;base64,iVBOR")


def test_unwritable_variants_are_pruned_and_bad_configs_fail_with_reasons(
    fresh_search_data, tmp_path
):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"  # an RDB storage, as Postgres would be
    no_write = replace(SMALL, codecs=("zstd",), levels={"zstd": (3,)}, block_sizes=(256,))
    result = run_bayesian("sample", "local", 2, 0, fresh_search_data, **QUICK, storage_url=url,
                          options=quick_options(space=no_write, baselines=False,
                                                write_variants=False))  # fmt: skip
    assert {t.state for t in result.trials} == {"PRUNED"}
    assert all("not written" in t.reason for t in result.trials)
    assert not fresh_search_data.variant_dir("sample", "zstd_l3_b256").exists()
    storage, where = optuna_storage(fresh_search_data, url)
    assert isinstance(storage, optuna.storages.RDBStorage) and where == url

    too_big = replace(SMALL, codecs=("none",), patch_sizes=(1024,))  # rasters are 512 px
    failed = run_bayesian("sample", "local", 1, 0, fresh_search_data, **QUICK,
                          options=quick_options(space=too_big, baselines=False))  # fmt: skip
    assert [t.state for t in failed.trials] == ["FAIL"]
    assert "smaller than the patch size 1024" in failed.trials[0].reason
    rows = results.query(
        fresh_search_data.results_db,
        "SELECT study, state, reason FROM search_trials WHERE state <> 'COMPLETE' ORDER BY study",
    )[1]
    assert {(s, st) for s, st, _ in rows} == {
        (result.study, "PRUNED"), (failed.study, "FAIL")
    }  # fmt: skip
    assert all(reason for *_, reason in rows)


def test_two_processes_share_one_study(fresh_search_data):
    data = fresh_search_data
    env = {**os.environ, "OCOG_DATA_DIR": str(data.data_dir), "PYTHONPATH": str(REPO)}
    env.pop("OCOG_DUCKDB", None)
    env.pop("OCOG_OPTUNA_STORAGE", None)
    args = ["search", "bayesian", "--study", "shared", "--trials", "2", "--seconds", "0.2",
            "--warmup", "0.05", "--no-baselines", "--max-workers", "0", "--json"]  # fmt: skip
    code = f"import sys; from ocog_lib.cli.main import main; sys.exit(main({args!r}))"
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, cwd=data.data_dir,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert json.loads(out.splitlines()[-1])["study"] == "shared"
    study = load_study("shared", data)
    assert len(study.trials) == 4
    assert len({t.worker for t in study.trials}) == 2  # both processes ran trials
    assert (data.data_dir / "optuna.journal").exists()
    n = results.query(data.results_db, "SELECT count(*) FROM search_trials WHERE study = ?",
                      ["shared"])[1][0][0]  # fmt: skip
    assert n == 4


def test_an_unknown_storage_is_named(search_data):
    with pytest.raises(Exception, match="storage 'ftp'"):
        run_bayesian("sample", "ftp", 1, 0, search_data, **QUICK,
                     options=quick_options(baselines=False))  # fmt: skip
