"""ocog's jobs on Dagster's Celery executor: four partition runs at once (two cog_variants,
two stream_benchmarks) on a dagster-postgres instance, their steps spread over two Celery
workers on a local Redis; every run succeeds, both workers executed steps (the run log
names each step's worker), and the one-slot `benchmark` pool kept the two benchmarks from
measuring each other across workers (their steps never overlap in time)."""

from __future__ import annotations

import faulthandler
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from ocog_assets.defs.common.pools import make_pool_slots
from ocog_lib.cog.profiles import resolve_profile
from ocog_lib.cog.write import write_variant
from ocog_lib.remote.celery_workers import CeleryWorkers, WorkerConfig, celery_env
from ocog_lib.remote.postgres import DAGSTER_URL_ENV
from ocog_lib.settings import Settings
from tests.support.postgres import postgres_server  # noqa: F401
from tests.support.processes import alive
from tests.support.redis import redis_server  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "dagster_home/dagster-pg.yaml.template"
BENCH_CONFIG = {"ops": {"stream_benchmarks": {"config": {"seconds": 0.2, "step_ms": 0}}}}
RUNS = [  # (job, dataset|variant): the benchmarks read variants nobody rewrites meanwhile
    ("stream_benchmarks_job", "sample|default"),
    ("stream_benchmarks_job", "sample|optimal_local"),
    ("cog_variants_job", "vaihingen|default"),
    ("cog_variants_job", "vaihingen|optimal_remote"),
]


def run_one(job_name: str, key: str) -> None:
    """In a child process (its code location picks $OCOG_EXECUTOR=celery at import): one
    partition run on the instance of $DAGSTER_HOME; it orchestrates, the workers execute."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    from ocog_assets.defs.common.partitions import dataset_variant

    repo = ReconstructableRepository.for_module("ocog_assets.definitions", "defs", str(REPO))
    job = repo.get_reconstructable_job(job_name)
    config = BENCH_CONFIG if job_name == "stream_benchmarks_job" else None
    tags = {**dataset_variant.get_tags_for_partition_key(key), "ocog/test": "celery"}
    with dg.DagsterInstance.get() as instance:
        res = dg.execute_job(job, instance, run_config=config, tags=tags, raise_on_error=False)
        print(json.dumps({"run_id": res.run_id, "success": res.success}), flush=True)
    faulthandler.dump_traceback_later(60, exit=True)  # lingering after its run: say where


def _launch() -> list[tuple[subprocess.Popen, str, str]]:
    procs = []
    for job_name, key in RUNS:
        code = ("from tests.ocog_assets.test_celery_workers import run_one; "
                f"run_one({job_name!r}, {key!r})")  # fmt: skip
        procs.append((subprocess.Popen([sys.executable, "-c", code], cwd=REPO,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       text=True), job_name, key))  # fmt: skip
    return procs


@pytest.fixture
def celery_workers(redis_server, postgres_server, tmp_path, monkeypatch):  # noqa: F811
    """Two workers on the session's Redis, spawned first (they start while the data is
    prepared), with the environment of a dagster-postgres instance in tmp."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(TEMPLATE, home / "dagster.yaml")
    config = WorkerConfig(redis_server.url_for(0), redis_server.url_for(1), tmp_path / "celery")
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = {"DAGSTER_HOME": str(home), "OCOG_DATA_DIR": str(tmp_path / "data"),
           DAGSTER_URL_ENV: postgres_server.dagster_url(f"dagster_celery_{os.getpid()}"),
           "OCOG_BENCH_SECONDS": "0.2", "PYTHONPATH": pythonpath, **celery_env(config)}  # fmt: skip
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in ("OCOG_DUCKDB", "OCOG_OPTUNA_STORAGE"):
        monkeypatch.delenv(k, raising=False)
    workers = CeleryWorkers(config, 2).spawn()
    try:
        yield workers
    finally:
        workers.stop()


@pytest.fixture
def sample_data(celery_workers, tiny_sample):
    """The tiny sample with the benchmarks' two variants written; `vaihingen`, its copy,
    for the variant runs."""
    settings = Settings.from_env()
    for dataset in ("sample", "vaihingen"):
        shutil.copytree(tiny_sample.prepared, settings.prepared_dir(dataset))
    for variant in ("default", "optimal_local"):
        write_variant(tiny_sample.manifest, resolve_profile(variant),
                      settings.variant_dir("sample", variant), check=False)  # fmt: skip
    return settings


def _step_workers(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """step key -> the Celery worker that executed it, from the run's engine events."""
    out = {}
    for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        meta = e.dagster_event.engine_event_data.metadata or {}
        if "Celery worker" in meta:
            out[e.step_key] = meta["Celery worker"].value
    return out


def _step_interval(instance: dg.DagsterInstance, run_id: str, step: str) -> tuple[float, float]:
    """When `step` started and succeeded, from its STEP_START / STEP_SUCCESS events."""
    logs = instance.all_logs(run_id)
    start = [e.timestamp for e in logs if e.step_key == step and e.dagster_event
             and e.dagster_event.event_type == dg.DagsterEventType.STEP_START]  # fmt: skip
    end = [e.timestamp for e in logs if e.step_key == step and e.dagster_event
           and e.dagster_event.event_type == dg.DagsterEventType.STEP_SUCCESS]  # fmt: skip
    assert len(start) == 1 and len(end) == 1, (run_id, step, start, end)
    return start[0], end[0]


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_partition_runs_spread_over_two_celery_workers_and_the_benchmark_pool_holds(
    celery_workers, sample_data
):
    t0 = time.monotonic()
    workers = celery_workers.wait_ready()
    pids = workers.pids
    assert all(alive(pid) for pid in pids)
    with dg.DagsterInstance.get() as instance:  # the pools' slots made before any run races
        make_pool_slots(instance)  # to make them lazily (both won)
    procs = _launch()
    try:
        outs = [(p.communicate(timeout=360)[0], job, key, p.returncode) for p, job, key in procs]
    finally:
        for p, _, _ in procs:
            p.kill()
    wall = time.monotonic() - t0
    logs = "\n".join(f"{w.name}: {w.log_tail(2000)}" for w in workers.workers)
    workers.stop()
    assert not any(alive(pid) for pid in pids)  # stopped by PID
    for out, job, key, rc in outs:
        assert rc == 0, f"{job}[{key}]:\n{out[-3000:]}\n{logs}"
        result = [json.loads(ln) for ln in out.splitlines() if ln.startswith('{"run_id"')]
        assert result and result[-1]["success"], f"{out[-3000:]}\n{logs}"

    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs(dg.RunsFilter(tags={"ocog/test": "celery"}))
        assert len(runs) == 4 and {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
        named = {(r.job_name, r.tags["dagster/partition"]): r for r in runs}
        assert set(named) == set(RUNS)
        by_step = {f"{job}[{key}] {step}": worker for (job, key), r in named.items()
                   for step, worker in _step_workers(instance, r.run_id).items()}  # fmt: skip
        print(f"\n4 runs on 2 Celery workers in {wall:.1f} s; step -> worker: "
              f"{json.dumps(by_step, indent=1)}")  # fmt: skip
        assert {w.split("@")[0] for w in by_step.values()} == set(workers.names)
        for (job, key), r in named.items():  # every step of every run went through Celery
            steps = {e.step_key for e in instance.all_logs(
                r.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)}  # fmt: skip
            assert steps and steps <= set(_step_workers(instance, r.run_id)), (job, key)
        benches = sorted(_step_interval(instance, r.run_id, "stream_benchmarks")
                         for (job, _), r in named.items() if job == "stream_benchmarks_job")
        (_, first_end), (second_start, _) = benches
        assert first_end <= second_start, f"benchmarks overlapped: {benches}"
