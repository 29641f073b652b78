import dagster as dg

from ocog_assets.defs.variants.assets import cog_variants

defs = dg.Definitions(assets=[cog_variants])
