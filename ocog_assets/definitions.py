"""The code location (workspace.yaml): every domain's definitions plus the shared resources.

Each domain (defs/<domain>/) owns its assets, partitions, jobs, schedules and sensors;
defs/common/ holds what they share (resources, partitions, pools). Dagster's loader wants
exactly one Definitions object at module scope, so the domains are imported as modules,
not as their `defs` names.
"""

import dagster as dg

from ocog_assets.defs.benchmarks import definitions as benchmarks
from ocog_assets.defs.common import definitions as common
from ocog_assets.defs.compression import definitions as compression
from ocog_assets.defs.cubes import definitions as cubes
from ocog_assets.defs.data import definitions as data
from ocog_assets.defs.embeddings import definitions as embeddings
from ocog_assets.defs.packaging import definitions as packaging
from ocog_assets.defs.remote import definitions as remote
from ocog_assets.defs.results import definitions as results
from ocog_assets.defs.sample import definitions as sample
from ocog_assets.defs.search import definitions as search
from ocog_assets.defs.training import definitions as training
from ocog_assets.defs.variants import definitions as variants

defs = dg.Definitions.merge(
    data.defs,
    variants.defs,
    results.defs,
    benchmarks.defs,
    packaging.defs,
    training.defs,
    search.defs,
    remote.defs,
    cubes.defs,
    embeddings.defs,
    compression.defs,
    sample.defs,
    common.defs,
)
