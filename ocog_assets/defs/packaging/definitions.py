import dagster as dg

from ocog_assets.defs.packaging.assets import hdf5_packages

defs = dg.Definitions(assets=[hdf5_packages])
