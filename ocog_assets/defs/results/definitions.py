import dagster as dg

from ocog_assets.defs.results.assets import variant_stats

defs = dg.Definitions(assets=[variant_stats])
