import dagster as dg

from ocog_assets.defs.data.assets import prepared_datasets, raw_scenes
from ocog_assets.defs.data.sensors import sample_tiles_sensor

defs = dg.Definitions(assets=[raw_scenes, prepared_datasets], sensors=[sample_tiles_sensor])
