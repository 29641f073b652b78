from __future__ import annotations

import dagster as dg

from ocog_assets.defs.common.partitions import datasets

compression_job = dg.define_asset_job(
    "compression_job", partitions_def=datasets,
    selection=dg.AssetSelection.assets("compression_models", "compressed_archive",
                                       "hash_retrieval_quality"),
    description="One dataset: train the codec and its hash head, archive every patch as a "
    "bitstream and a hash code, score hash retrieval.",
)
