"""`ocog demo`: the embedded sample's asset graph, run in-process on the real instance.

Dagster runs one partition key per run and a job covers one partitions definition, so the
sample is a plan of runs: each sample tile, then dataset=sample, then each variant (COGs,
then benchmarks), a short search and grid on local storage, brief training under two
loader configs, the HDF5 package, and the embeddings (a brief encoder, every patch keyed
by H3 cell, the HNSW index, retrieval quality; then `ocog similar` answers) and the
compressed archive (a brief codec and hash head, every patch as a bitstream and a hash
code, hash retrieval quality; then `ocog similar --by hash` answers). The runs
land in the instance at $DAGSTER_HOME and show in the UI like any other.
`remote_variants` (and the remote partitions of search and training) need the S3
endpoint, which outlives a run: materialize them from the UI or the CLI once
`ocog s3 serve` (or a configured endpoint) is up.
"""

import os
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from ocog_assets.definitions import defs
from ocog_assets.defs.benchmarks.jobs import stream_benchmarks_job
from ocog_assets.defs.common.partitions import SENSOR_TILE, VARIANTS
from ocog_assets.defs.compression.jobs import compression_job
from ocog_assets.defs.data.jobs import prepared_datasets_job, raw_scenes_job
from ocog_assets.defs.data.sensors import missing_sample_tiles
from ocog_assets.defs.embeddings.jobs import embeddings_job
from ocog_assets.defs.packaging.jobs import hdf5_packages_job
from ocog_assets.defs.search.jobs import grid_results_job, search_results_job
from ocog_assets.defs.training.jobs import trained_models_job
from ocog_assets.defs.variants.jobs import cog_variants_job
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
    local = dg.MultiPartitionKey({"dataset": "sample", "storage": "local"})
    plan += [(search_results_job.name, local), (grid_results_job.name, local)]
    plan += [(trained_models_job.name,
              dg.MultiPartitionKey({"dataset": "sample", "loader_config": c}))
             for c in DEMO_LOADER_CONFIGS]
    plan.append((hdf5_packages_job.name, "sample"))
    plan.append((embeddings_job.name, "sample"))
    plan.append((compression_job.name, "sample"))
    return plan


# training compares loader configs; the remote two need the S3 endpoint (see the module doc)
DEMO_LOADER_CONFIGS = ("local-default", "local-optimal")


def _seconds() -> float | None:
    raw = os.environ.get("OCOG_BENCH_SECONDS")
    return float(raw) if raw else None


def _demo_op_config(job_name: str) -> dict | None:
    """Short versions of the search, grid and training: the demo shows them, it does not
    tune anything (run the assets with their defaults for that)."""
    seconds = _seconds()
    if job_name == search_results_job.name:
        return {"search_results": {"config": {"trials": 3, "seconds": seconds or 1.5,
                                               "warmup_seconds": 0.3}}}
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


def _run_config(job_name: str) -> dict:
    """Quiet console; benchmarks in their quick profile, or $OCOG_BENCH_SECONDS per run."""
    ops = _demo_op_config(job_name)
    if ops is not None:
        return {**_QUIET, "ops": ops}
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
