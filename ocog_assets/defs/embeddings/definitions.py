import dagster as dg

from ocog_assets.defs.embeddings.assets import (
    embedding_index,
    embedding_models,
    patch_embeddings,
    retrieval_quality,
)
from ocog_assets.defs.embeddings.jobs import embeddings_job

defs = dg.Definitions(
    assets=[embedding_models, patch_embeddings, embedding_index, retrieval_quality],
    jobs=[embeddings_job],
)
