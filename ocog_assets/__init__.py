"""ocog's Dagster layer: thin assets over ocog_lib.

One folder per domain under defs/ (data, variants, results, benchmarks, search, training,
packaging, remote) owns its assets, partitions, jobs, schedules and sensors; defs/common/
holds the shared resources, partitions and pools; definitions.py merges them. demo.py
drives the sample's jobs across domains (`ocog demo`).
"""
