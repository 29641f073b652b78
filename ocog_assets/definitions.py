"""The code location (workspace.yaml): every domain's definitions plus shared resources."""

from __future__ import annotations

import dagster as dg

from ocog_assets.defs.data.definitions import defs as data_defs
from ocog_assets.defs.results.definitions import defs as results_defs
from ocog_assets.defs.variants.definitions import defs as variants_defs
from ocog_assets.jobs import JOBS
from ocog_assets.resources import default_resources

defs = dg.Definitions.merge(
    data_defs,
    variants_defs,
    results_defs,
    dg.Definitions(jobs=list(JOBS), resources=default_resources()),
)
