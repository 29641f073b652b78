"""ocog's Dagster layer: partitions, resources and thin assets over ocog_lib.

Domains live under defs/<domain>/ (data, variants, results); definitions.py merges them.
"""
