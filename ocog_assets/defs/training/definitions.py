import dagster as dg

from ocog_assets.defs.training.assets import trained_models
from ocog_assets.defs.training.jobs import trained_models_job

defs = dg.Definitions(assets=[trained_models], jobs=[trained_models_job])
