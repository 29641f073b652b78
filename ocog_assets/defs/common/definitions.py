import dagster as dg

from ocog_assets.defs.common.resources import default_resources

defs = dg.Definitions(resources=default_resources())
