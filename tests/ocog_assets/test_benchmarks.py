"""stream_benchmarks as an asset: rows in DuckDB, a regression check, a nightly schedule."""

import datetime as dt

import dagster as dg
import duckdb
import pytest

from ocog_assets.defs.benchmarks.assets import REGRESSION, StreamBenchConfig, stream_benchmarks
from ocog_assets.defs.benchmarks.schedules import nightly_stream_benchmarks
from ocog_assets.defs.common.resources import OcogPaths, ResultsStore
from ocog_lib import results
from ocog_lib.cli.main import main
from ocog_lib.settings import Settings

KEY = dg.MultiPartitionKey({"dataset": "sample", "variant": "default"})


@pytest.fixture
def sample_default(instance, monkeypatch):
    """The shared instance, with the sample built and its default variant written."""
    monkeypatch.setenv("OCOG_BENCH_SIZE", "768")
    assert main(["sample", "build"]) == 0
    assert main(["variants", "write", "--variant", "default", "--no-check", "--no-record"]) == 0
    return instance, Settings.from_env()


def _run(inst, settings):
    paths = OcogPaths(data_dir=str(settings.data_dir))
    # step_ms=0: no data-wait rows (they start the reference loader's workers twice more,
    # ~40 of this test's ~100 s; test_local.py covers them)
    config = dg.RunConfig({"stream_benchmarks": StreamBenchConfig(seconds=0.2, step_ms=0.0)})
    return dg.materialize(
        [stream_benchmarks],
        partition_key=str(KEY),
        instance=inst,
        resources={"paths": paths, "results": ResultsStore(paths=paths)},
        run_config=config,
    )


def test_benchmark_rows_and_regression_check(sample_default):
    inst, settings = sample_default
    first = _run(inst, settings)
    meta = first.asset_materializations_for_node("stream_benchmarks")[0].metadata
    run_id = meta["run_id"].value
    _, rows = results.query(
        settings.results_db, "SELECT loader, name FROM stream_benchmarks WHERE run_id = ?", [run_id]
    )
    names = {n for _, n in rows}
    assert {"reference default", "ocog random", "ocog block", "decode limit block"} <= names
    check = first.get_asset_check_evaluations()[0]
    assert check.check_name == REGRESSION and check.passed  # nothing to compare with yet

    # a past run ten times faster on this host: the next run must be flagged
    with duckdb.connect(str(settings.results_db)) as con:
        con.execute(
            "UPDATE stream_benchmarks SET samples_per_s = samples_per_s * 10, "
            "ts = ts - INTERVAL 1 DAY WHERE run_id = ?",
            [run_id],
        )
    second = _run(inst, settings)
    check = second.get_asset_check_evaluations()[0]
    assert not check.passed
    assert check.metadata["previous_run"].value == run_id
    dropped = check.metadata["dropped"].value
    assert {d["name"] for d in dropped} >= {"ocog random", "ocog block"}
    assert all(d["drop"] > 0.2 for d in dropped)


def test_nightly_schedule_is_off_and_asks_for_each_variant():
    assert nightly_stream_benchmarks.default_status == dg.DefaultScheduleStatus.STOPPED
    from ocog_assets.definitions import defs

    ctx = dg.build_schedule_context(
        scheduled_execution_time=dt.datetime(2026, 11, 22, 3),
        repository_def=defs.get_repository_def(),
    )
    requests = list(nightly_stream_benchmarks.evaluate_tick(ctx).run_requests)
    assert [r.partition_key for r in requests] == [
        f"sample|{v}" for v in ("default", "optimal_local", "optimal_remote")
    ]
    assert len({r.run_key for r in requests}) == 3
