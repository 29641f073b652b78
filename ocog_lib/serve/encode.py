"""A tile's bytes in each format: PNG (RGBA), npy (float32, NaN = nodata), GeoTIFF.

The PNG writer is a few lines of zlib (no imaging library needed); the GeoTIFF is GDAL's,
in the tile's own CRS and bounds so a GIS places it where the tile lies.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np

MEDIA_TYPES = {"png": "image/png", "npy": "application/octet-stream", "tif": "image/tiff"}


def encode_png(rgba: np.ndarray) -> bytes:
    """(h, w, 4) uint8 -> PNG, colour type 6 (RGBA), 8 bits, no interlace."""
    h, w, _ = rgba.shape
    rows = np.concatenate([np.zeros((h, 1), np.uint8), rgba.reshape(h, w * 4)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))  # fmt: skip

    header = struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b""))  # fmt: skip


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
