import dagster as dg

from ocog_assets.defs.data.assets import prepared_datasets, raw_scenes, sentinel2_scenes
from ocog_assets.defs.data.jobs import (
    prepared_datasets_job,
    raw_scenes_job,
    sentinel2_discovery_job,
)
from ocog_assets.defs.data.schedules import sentinel2_discovery_schedule
from ocog_assets.defs.data.sensors import sample_tiles_sensor, sentinel2_new_scenes_sensor

defs = dg.Definitions(
    assets=[sentinel2_scenes, raw_scenes, prepared_datasets],
    jobs=[raw_scenes_job, prepared_datasets_job, sentinel2_discovery_job],
    schedules=[sentinel2_discovery_schedule],
    sensors=[sample_tiles_sensor, sentinel2_new_scenes_sensor],
)
