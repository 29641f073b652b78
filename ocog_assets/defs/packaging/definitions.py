import dagster as dg

from ocog_assets.defs.packaging.assets import hdf5_packages
from ocog_assets.defs.packaging.jobs import hdf5_packages_job

defs = dg.Definitions(assets=[hdf5_packages], jobs=[hdf5_packages_job])
