"""A dagster-postgres instance takes four concurrent runs from four processes: different
partitions of cog_variants and stream_benchmarks, overlapping in time, each recorded,
none 'database is locked'. (One benchmark: the `benchmark` pool has one slot, so a second
would only queue behind it, and a quick benchmark takes ~45 s on a loaded 2-core host.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from ocog_lib.cog.profiles import resolve_profile
from ocog_lib.cog.write import write_variant
from ocog_lib.remote.postgres import DAGSTER_URL_ENV
from ocog_lib.settings import Settings
from tests.support.postgres import postgres_server  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "dagster_home/dagster-pg.yaml.template"
RUNS = [  # (asset, dataset|variant): the benchmark reads a variant nobody rewrites meanwhile
    ("cog_variants", "vaihingen|default"),
    ("cog_variants", "vaihingen|optimal_local"),
    ("cog_variants", "vaihingen|optimal_remote"),
    ("stream_benchmarks", "sample|default"),
]


def run_one(asset: str, key: str) -> None:
    """In a child process: one materialization on the instance of $DAGSTER_HOME."""
    from ocog_assets.defs.benchmarks.assets import StreamBenchConfig, stream_benchmarks
    from ocog_assets.defs.common.resources import OcogPaths, ResultsStore
    from ocog_assets.defs.variants.assets import cog_variants

    paths = OcogPaths(data_dir=os.environ["OCOG_DATA_DIR"])
    config = dg.RunConfig({"stream_benchmarks": StreamBenchConfig(seconds=0.2, step_ms=0)})
    with dg.DagsterInstance.get() as instance:
        res = dg.materialize(
            [cog_variants, stream_benchmarks], selection=[asset], partition_key=key,
            instance=instance, resources={"paths": paths, "results": ResultsStore(paths=paths)},
            run_config=config if asset == "stream_benchmarks" else None,
            tags={"ocog/test": "postgres", "ocog/asset": asset}, raise_on_error=False,
        )  # fmt: skip
        print(json.dumps({"run_id": res.run_id, "success": res.success}), flush=True)


@pytest.fixture
def pg_home(postgres_server, tiny_sample, tmp_path, monkeypatch):  # noqa: F811
    """DAGSTER_HOME on the test server; data: the sample (default variant written) and
    its prepared copy as `vaihingen` (variants written by the runs)."""
    settings = Settings(data_dir=tmp_path / "data", results_db=tmp_path / "data" / "ocog.duckdb")
    for dataset in ("sample", "vaihingen"):
        shutil.copytree(tiny_sample.prepared, settings.prepared_dir(dataset))
    write_variant(tiny_sample.manifest, resolve_profile("default"),
                  settings.variant_dir("sample", "default"), check=False)  # fmt: skip
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(TEMPLATE, home / "dagster.yaml")
    env = {"DAGSTER_HOME": str(home), DAGSTER_URL_ENV: postgres_server.dagster_url(
        f"dagster_{os.getpid()}"), "OCOG_DATA_DIR": str(settings.data_dir)}  # fmt: skip
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in ("OCOG_DUCKDB", "OCOG_OPTUNA_STORAGE"):
        monkeypatch.delenv(k, raising=False)
    return env


def _launch(env: dict[str, str]) -> list[tuple[subprocess.Popen, str, str]]:
    child_env = {**os.environ, **env, "PYTHONPATH": str(REPO), "OCOG_BENCH_SECONDS": "0.2"}
    procs = []
    for asset, key in RUNS:
        code = ("from tests.ocog_assets.test_postgres_instance import run_one; "
                f"run_one({asset!r}, {key!r})")  # fmt: skip
        procs.append((subprocess.Popen([sys.executable, "-c", code], env=child_env, cwd=REPO,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       text=True), asset, key))  # fmt: skip
    return procs


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_four_concurrent_runs_on_postgres(pg_home):
    t0 = time.monotonic()
    procs = _launch(pg_home)
    outs = [(p.communicate(timeout=360)[0], asset, key, p.returncode) for p, asset, key in procs]
    wall = time.monotonic() - t0
    for out, asset, key, rc in outs:
        assert rc == 0, f"{asset}[{key}]:\n{out[-3000:]}"
        assert "database is locked" not in out
        assert json.loads(out.strip().splitlines()[-1])["success"], out[-3000:]

    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        runs = instance.get_runs(dg.RunsFilter(tags={"ocog/test": "postgres"}))
        assert len(runs) == 4 and {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
        named = {(r.tags["ocog/asset"], r.tags["dagster/partition"]): r for r in runs}
        assert set(named) == set(RUNS)
        for (asset, key), r in named.items():
            logs = instance.all_logs(r.run_id)
            assert not any("database is locked" in (e.message or "") for e in logs)
            assert key in instance.get_materialized_partitions(dg.AssetKey(asset))
        stats = {f"{a}[{k}]": instance.get_run_stats(r.run_id) for (a, k), r in named.items()}
        durations = {n: round(s.end_time - s.start_time, 1) for n, s in stats.items()}
        print(f"\n4 concurrent runs in {wall:.1f} s wall; run durations (s): {durations}")
        # truly concurrent: every variant run overlapped the benchmark run
        bench = stats["stream_benchmarks[sample|default]"]
        for name, s in stats.items():
            assert s.start_time < bench.end_time and bench.start_time < s.end_time, name
