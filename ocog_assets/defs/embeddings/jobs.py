from __future__ import annotations

import dagster as dg

from ocog_assets.defs.common.partitions import datasets

embeddings_job = dg.define_asset_job(
    "embeddings_job", partitions_def=datasets,
    selection=dg.AssetSelection.assets("embedding_models", "patch_embeddings", "embedding_index",
                                       "retrieval_quality"),
    description="One dataset: train the encoder, embed every patch, index, score retrieval.",
)
