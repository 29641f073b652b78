import dagster as dg

from ocog_assets.defs.search.assets import grid_results, search_results
from ocog_assets.defs.search.jobs import grid_results_job, search_results_job

defs = dg.Definitions(assets=[search_results, grid_results],
                      jobs=[search_results_job, grid_results_job])
