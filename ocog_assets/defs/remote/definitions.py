import dagster as dg

from ocog_assets.defs.remote.assets import remote_variants

defs = dg.Definitions(assets=[remote_variants])
