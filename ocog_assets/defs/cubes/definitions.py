import dagster as dg

from ocog_assets.defs.cubes.assets import tile_benchmarks, virtual_cubes
from ocog_assets.defs.cubes.jobs import tile_benchmarks_job, virtual_cubes_job
from ocog_assets.defs.cubes.schedules import latest_virtual_cubes

defs = dg.Definitions(assets=[virtual_cubes, tile_benchmarks],
                      jobs=[virtual_cubes_job, tile_benchmarks_job],
                      schedules=[latest_virtual_cubes])
