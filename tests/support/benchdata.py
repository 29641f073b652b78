"""A tiny sample with its three variants on disk, for benchmark tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ocog_lib.data.manifest import DatasetManifest, ManifestItem
from ocog_lib.settings import Settings
from tests.support.rasters import real_pixels, write_raster

PROFILES = {
    "default": dict(compress="DEFLATE", level=6, blocksize=256),
    "optimal_local": dict(compress="NONE", blocksize=256),
    "optimal_remote": dict(compress="LERC_ZSTD", max_z_error=0, blocksize=256),
}


def make_bench_variants(root: Path, size: int = 768, extra: dict | None = None) -> Settings:
    """Two bench scenes (+ masks) per variant under `root`, like the real sample's layout;
    `extra`: more variants, name -> GDAL creation options."""
    s = Settings(data_dir=root, results_db=root / "ocog.duckdb")
    for variant, opts in {**PROFILES, **(extra or {})}.items():
        folder = s.variant_dir("sample", variant)
        folder.mkdir(parents=True)
        items = []
        for i in range(2):
            arr = real_pixels(4, size, size, "uint16", seed=i)
            write_raster(folder / f"bench_{i}.tif", arr, **opts)
            labels = (arr[3] > arr[2]).astype(np.uint8)[None]
            write_raster(folder / f"bench_{i}_mask.tif", labels, compress="DEFLATE", blocksize=256)
            items.append(
                ManifestItem(f"bench_{i}", f"bench_{i}.tif", f"bench_{i}_mask.tif", "bench")
            )
        DatasetManifest("sample", {0: "other", 1: "vegetation"}, items).save(folder)
    return s
