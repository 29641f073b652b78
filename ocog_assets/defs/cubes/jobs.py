from __future__ import annotations

import dagster as dg

from ocog_assets.defs.cubes.partitions import area_period

virtual_cubes_job = dg.define_asset_job(
    "virtual_cubes_job", selection=dg.AssetSelection.assets("virtual_cubes"),
    partitions_def=area_period, description="One area|period composite (a reduced COG).",
)
tile_benchmarks_job = dg.define_asset_job(
    "tile_benchmarks_job", selection=dg.AssetSelection.assets("tile_benchmarks"),
    description="ocog's cube tiles against rio-tiler's, rows in DuckDB.",
)
