import dagster as dg

from ocog_assets.defs.search.assets import grid_results, search_results

defs = dg.Definitions(assets=[search_results, grid_results])
