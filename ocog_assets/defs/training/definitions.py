import dagster as dg

from ocog_assets.defs.training.assets import trained_models

defs = dg.Definitions(assets=[trained_models])
