import dagster as dg

from ocog_assets.defs.sample.sensors import sample_graph

defs = dg.Definitions(sensors=[sample_graph])
