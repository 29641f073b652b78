"""A tile's bytes in each format: PNG (RGBA), npy (float32, NaN = nodata), GeoTIFF.

The PNG writer is `ocog_lib.cube.render`'s (a few lines of zlib, shared with the cube's
previews); the GeoTIFF is GDAL's, in the tile's own CRS and bounds so a GIS places it where
the tile lies.
"""

from __future__ import annotations

import io

import numpy as np

from ocog_lib.cube.render import encode_png

__all__ = ["MEDIA_TYPES", "encode_npy", "encode_png", "encode_tif"]

MEDIA_TYPES = {"png": "image/png", "npy": "application/octet-stream", "tif": "image/tiff"}


def encode_npy(data: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(data, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def encode_tif(data: np.ndarray, bounds: tuple[float, float, float, float], crs) -> bytes:
    """float32 GeoTIFF, nodata NaN, DEFLATE; `bounds` (left, bottom, right, top) in `crs`."""
    from rasterio.io import MemoryFile
    from rasterio.transform import from_bounds

    h, w = data.shape
    profile = dict(driver="GTiff", width=w, height=h, count=1, dtype="float32", crs=crs,
                   transform=from_bounds(*bounds, w, h), nodata=float("nan"),
                   compress="deflate", tiled=w % 16 == 0 and h % 16 == 0,
                   blockxsize=min(w, 256), blockysize=min(h, 256))  # fmt: skip
    with MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.write(data.astype(np.float32, copy=False), 1)
        return bytes(mem.read())
