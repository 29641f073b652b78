import dagster as dg

from ocog_assets.defs.compression.assets import (
    compressed_archive,
    compression_models,
    hash_retrieval_quality,
)
from ocog_assets.defs.compression.jobs import compression_job

defs = dg.Definitions(
    assets=[compression_models, compressed_archive, hash_retrieval_quality],
    jobs=[compression_job],
)
