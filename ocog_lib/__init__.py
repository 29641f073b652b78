"""ocog: stream Cloud-Optimized GeoTIFFs into PyTorch at the decode limit.

Plain Python; never imports dagster (the Dagster layer lives in ocog_assets).
"""

__version__ = "0.1.0"
