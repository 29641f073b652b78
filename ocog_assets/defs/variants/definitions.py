import dagster as dg

from ocog_assets.defs.variants.assets import cog_variants
from ocog_assets.defs.variants.jobs import cog_variants_job

defs = dg.Definitions(assets=[cog_variants], jobs=[cog_variants_job])
