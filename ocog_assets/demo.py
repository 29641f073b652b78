"""`ocog demo`: the embedded sample's asset graph, run by Dagster like runs from the UI.

The plan of runs is `defs/sample/plan.py` (each sample tile, dataset=sample, each
variant's COGs and benchmarks, a short search and grid, brief training under two loader
configs, the HDF5 package, a brief encoder and its embeddings (then `ocog similar`
answers), a brief codec and its compressed archive (then `ocog similar --by hash`
answers)); the demo gives its runs short budgets.

The demo starts `dagster dev` on the instance at $DAGSTER_HOME (127.0.0.1, a free port,
stopped by PID when the demo ends), submits each wave of the plan over GraphQL into the
run queue, and waits for it: the daemon launches the runs (4 at once at most, the pools
keep DuckDB writes and measurements serial), so they carry the code location's origin
and the UI lists them on each job's Runs tab, the timeline and the asset pages.
`remote_variants` (and the remote partitions of search and training) need the S3
endpoint, which outlives a run: materialize them from the UI or the CLI once
`ocog s3 serve` (or a configured endpoint) is up. In the UI, the sensor `sample_graph`
backfills the same plan with every asset's default budgets.
"""

import os
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from ocog_assets.defs.benchmarks.jobs import stream_benchmarks_job
from ocog_assets.defs.common.executors import MULTIPROCESS, executor_kind
from ocog_assets.defs.common.partitions import SENSOR_TILE
from ocog_assets.defs.common.pools import make_pool_slots
from ocog_assets.defs.compression.jobs import compression_job
from ocog_assets.defs.data.sensors import missing_sample_tiles
from ocog_assets.defs.embeddings.jobs import embeddings_job
from ocog_assets.defs.sample.plan import sample_waves
from ocog_assets.defs.search.jobs import grid_results_job, search_results_job
from ocog_assets.defs.training.jobs import trained_models_job
from ocog_assets.queued_runs import LOCATION, PlannedRun, RunQueue
from ocog_lib.errors import InputError
from ocog_lib.remote.dagster_services import DagsterService, ServiceSpec

WORKSPACE = Path(__file__).resolve().parents[1] / "workspace.yaml"
# The step-by-step event log stays in the instance (and the UI); the run's stdout gets
# warnings.
_QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _seconds() -> float | None:
    raw = os.environ.get("OCOG_BENCH_SECONDS")
    return float(raw) if raw else None


def smoke() -> bool:
    """$OCOG_DEMO_SMOKE=1: the demo as a smoke run (the test suite's): every run, but the
    benchmarks skip their data-wait measurement and the search its DataLoader processes."""
    return os.environ.get("OCOG_DEMO_SMOKE", "") not in ("", "0")


def _demo_op_config(job_name: str) -> dict | None:
    """Short versions of the search, grid and training: the demo shows them, it does not
    tune anything (run the assets with their defaults for that)."""
    seconds = _seconds()
    if job_name == search_results_job.name:
        search = {"trials": 3, "seconds": seconds or 1.5, "warmup_seconds": 0.3}
        return {"search_results": {"config": {**search, **({"max_workers": 0} if smoke()
                                                            else {})}}}  # fmt: skip
    if job_name == grid_results_job.name:
        # the named variants (already written) x the two samplers: no new COGs to write
        return {"grid_results": {"config": {"var1": "variant", "var2": "sampler", "repeats": 1,
                                             "seconds": seconds or 1.5, "warmup_seconds": 0.3}}}
    if job_name == trained_models_job.name:
        budget = 20.0 if seconds is None else max(3.0, 10 * seconds)
        return {"trained_models": {"config": {"max_time": budget, "eval_every": 20,
                                               "resume": False}}}
    if job_name == embeddings_job.name:  # a brief encoder; a second demo continues it
        budget = 20.0 if seconds is None else max(3.0, 10 * seconds)
        return {"embedding_models": {"config": {"budget_s": budget}}}
    if job_name == compression_job.name:  # a brief codec; a second demo continues it
        budget = 15.0 if seconds is None else max(5.0, 10 * seconds)
        return {"compression_models": {"config": {"budget_s": budget}}}
    return None


def _execution() -> dict:
    """On the default executor, one process per run (its steps in it, not a spawned
    process each, every one importing the code location); $OCOG_EXECUTOR's others as set."""
    if executor_kind() != MULTIPROCESS:
        return {}
    return {"execution": {"config": {"in_process": {}}}}


def _run_config(job_name: str) -> dict:
    """What a demo run launches with: its ops' config and the executor's."""
    return {**_op_run_config(job_name), **_execution()}


def _op_run_config(job_name: str) -> dict:
    """Quiet console; benchmarks in their quick profile, or $OCOG_BENCH_SECONDS per
    measurement."""
    ops = _demo_op_config(job_name)
    if ops is not None:
        return {**_QUIET, "ops": ops}
    if job_name != stream_benchmarks_job.name:
        return _QUIET
    bench: dict = {"quick": True, **({"step_ms": 0.0} if smoke() else {})}
    if os.environ.get("OCOG_BENCH_SECONDS"):
        bench["seconds"] = float(os.environ["OCOG_BENCH_SECONDS"])
    return {**_QUIET, "ops": {"stream_benchmarks": {"config": bench}}}


def register_sample_tiles(instance: dg.DagsterInstance) -> list[str]:
    """Add the sample tiles as `sensor_tile` partitions (the sensor does it in `dagster dev`)."""
    from ocog_lib.data.sample import sample_tiles

    new = missing_sample_tiles(instance)
    if new:
        instance.add_dynamic_partitions(SENSOR_TILE, new)
    return sample_tiles()


def instance_from_env() -> dg.DagsterInstance:
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        raise InputError("DAGSTER_HOME", "not set: export DAGSTER_HOME=<repo>/dagster_home "
                                         "(`make demo` does) so the runs land in the UI's instance")
    if not (Path(home) / "dagster.yaml").exists():
        raise InputError(Path(home) / "dagster.yaml", "missing: DAGSTER_HOME must hold "
                                                      "ocog's dagster.yaml")
    return dg.DagsterInstance.get()


def materialize_sample(instance: dg.DagsterInstance | None = None,
                       progress: Callable[[str], None] = print) -> list[str]:
    """Run the sample plan, wave by wave, through `dagster dev`; returns the run ids.
    Stops after the first wave with a failed run (RunFailed names every failed run of it;
    its other runs finish) and stops the servers either way."""
    own = instance is None
    instance = instance or instance_from_env()
    try:
        make_pool_slots(instance)  # before the runs that would race to make them
        waves = sample_waves(register_sample_tiles(instance))
        with _services(instance, progress) as service:
            queue = RunQueue(instance, service.spec.host, service.port, alive=service.exited)
            run_ids = []
            for wave in waves:
                planned = [PlannedRun(job, key, _run_config(job)) for job, key in wave]
                run_ids += queue.run_wave(planned, progress)
            return run_ids
    finally:
        if own:
            instance.dispose()


def _services(instance: dg.DagsterInstance, progress: Callable[[str], None]) -> DagsterService:
    """`dagster dev` on this instance, started and loaded (its log: $DAGSTER_HOME/ocog_demo)."""
    home = Path(instance.root_directory)
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    # not $DAGSTER_HOME/logs: Dagster's telemetry moves what it finds there
    service = DagsterService(ServiceSpec(WORKSPACE), home / "ocog_demo" / "dagster_dev.log",
                             env=env)
    progress(f"starting dagster dev on {instance.root_directory} ...")
    service.start(LOCATION)
    progress(f"dagster dev up at {service.url} (pid {service.pid}); submitting the runs")
    return service
