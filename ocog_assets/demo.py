"""`ocog demo`: every asset of the embedded sample, run in-process on the real instance.

Dagster runs one partition key per run and a job covers one partitions definition, so the
sample is a plan of runs: each sample tile, then dataset=sample, then each variant. The
runs land in the instance at $DAGSTER_HOME and show in the UI like any other.
"""

import os
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from ocog_assets.definitions import defs
from ocog_assets.defs.benchmarks.schedules import stream_benchmarks_job
from ocog_assets.defs.data.sensors import missing_sample_tiles
from ocog_assets.jobs import cog_variants_job, prepared_datasets_job, raw_scenes_job
from ocog_assets.partitions import SENSOR_TILE, VARIANTS
from ocog_lib.errors import InputError

# The step-by-step event log stays in the instance (and the UI); the terminal gets warnings.
_QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def sample_plan(tiles: list[str]) -> list[tuple[str, str | dg.MultiPartitionKey]]:
    """(job name, partition key) for every run the sample needs, in dependency order."""
    plan: list[tuple[str, str | dg.MultiPartitionKey]] = [(raw_scenes_job.name, t) for t in tiles]
    plan.append((prepared_datasets_job.name, "sample"))
    plan += [(cog_variants_job.name, dg.MultiPartitionKey({"dataset": "sample", "variant": v}))
             for v in VARIANTS]
    plan += [(stream_benchmarks_job.name,
              dg.MultiPartitionKey({"dataset": "sample", "variant": v})) for v in VARIANTS]
    return plan


def _run_config(job_name: str) -> dict:
    """Quiet console; benchmarks in their quick profile, or $OCOG_BENCH_SECONDS per run."""
    if job_name != stream_benchmarks_job.name:
        return _QUIET
    bench: dict = {"quick": True}
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
    """Run the sample plan; returns run ids. Stops at the first failed run (raises)."""
    own = instance is None
    instance = instance or instance_from_env()
    try:
        run_ids = []
        for job_name, key in sample_plan(register_sample_tiles(instance)):
            progress(f"{job_name} [{key}] ...")
            result = defs.resolve_job_def(job_name).execute_in_process(
                instance=instance, partition_key=str(key), run_config=_run_config(job_name))
            progress(f"{job_name} [{key}] done, run {result.run_id}")
            run_ids.append(result.run_id)
        return run_ids
    finally:
        if own:
            instance.dispose()
