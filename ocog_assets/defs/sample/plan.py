"""The embedded sample's asset graph as a plan of runs: what `ocog demo` submits wave by
wave, and what the sensor `sample_graph` backfills in one go (one source for both).

Dagster runs one partition key per run and a job covers one partitions definition, so the
sample is a plan of (job, partition key): each sample tile, then dataset=sample, then each
variant (COGs, then benchmarks), a short search and grid on local storage, training under
two loader configs, the HDF5 package, the embeddings and the compressed archive.
`remote_variants` (and the remote partitions of search and training) need an S3 endpoint
that outlives a run, so the plan leaves them out.
"""

import dagster as dg

from ocog_assets.defs.benchmarks.jobs import stream_benchmarks_job
from ocog_assets.defs.common.partitions import VARIANTS
from ocog_assets.defs.compression.jobs import compression_job
from ocog_assets.defs.data.jobs import prepared_datasets_job, raw_scenes_job
from ocog_assets.defs.embeddings.jobs import embeddings_job
from ocog_assets.defs.packaging.jobs import hdf5_packages_job
from ocog_assets.defs.search.jobs import grid_results_job, search_results_job
from ocog_assets.defs.training.jobs import trained_models_job
from ocog_assets.defs.variants.jobs import cog_variants_job

Key = str | dg.MultiPartitionKey
# training compares loader configs; the remote two need the S3 endpoint (see the module doc)
SAMPLE_LOADER_CONFIGS = ("local-default", "local-optimal")
PLAN_JOBS = {job.name: job for job in (
    raw_scenes_job, prepared_datasets_job, cog_variants_job, stream_benchmarks_job,
    search_results_job, grid_results_job, trained_models_job, hdf5_packages_job,
    embeddings_job, compression_job)}


def sample_waves(tiles: list[str]) -> list[list[tuple[str, Key]]]:
    """(job name, partition key) for every run the sample needs, in waves: a wave needs
    only the waves before it, and its runs may run at once. The measurements (benchmarks,
    search, grid) share one wave with nothing else: their pool runs them one at a time."""
    def sample_by(dim: str, value: str) -> dg.MultiPartitionKey:
        return dg.MultiPartitionKey({"dataset": "sample", dim: value})

    return [
        [(raw_scenes_job.name, t) for t in tiles],
        [(prepared_datasets_job.name, "sample")],
        [(cog_variants_job.name, sample_by("variant", v)) for v in VARIANTS],
        [(stream_benchmarks_job.name, sample_by("variant", v)) for v in VARIANTS]
        + [(search_results_job.name, sample_by("storage", "local")),
           (grid_results_job.name, sample_by("storage", "local"))],
        # after the search: local-optimal trains with its winner (best_configs)
        [(trained_models_job.name, sample_by("loader_config", c))
         for c in SAMPLE_LOADER_CONFIGS]
        + [(hdf5_packages_job.name, "sample"), (embeddings_job.name, "sample"),
           (compression_job.name, "sample")],
    ]


def sample_plan(tiles: list[str]) -> list[tuple[str, Key]]:
    """Every run of `sample_waves`, in an order that respects its dependencies."""
    return [run for wave in sample_waves(tiles) for run in wave]
