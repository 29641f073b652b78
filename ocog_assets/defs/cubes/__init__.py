"""Virtual cubes as assets: a period's composite per area (a reduced COG) and the tile
benchmark (ocog's cube against rio-tiler, in DuckDB)."""
