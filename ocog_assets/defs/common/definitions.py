import dagster as dg

from ocog_assets.defs.common.executors import executor_from_env
from ocog_assets.defs.common.resources import default_resources

defs = dg.Definitions(resources=default_resources(), executor=executor_from_env())
