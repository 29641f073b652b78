from __future__ import annotations

import dagster as dg

from ocog_assets.defs.common.partitions import datasets

hdf5_packages_job = dg.define_asset_job(
    "hdf5_packages_job", selection=dg.AssetSelection.assets("hdf5_packages"),
    partitions_def=datasets, description="Package one dataset as HDF5 and check it.",
)
