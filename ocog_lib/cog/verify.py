"""Hold ocog's tile decoder to GDAL on a written file, tile by tile.

The lossless check of a variant compares GDAL's read of the source with GDAL's read of the
COG, so a decoder bug of ocog's own passes it (LERC float tiles with NaN once came back 0.0
and scrambled, and every variant check was green). This check decodes every stored
full-resolution tile the way the engine does and compares it with GDAL's read of the same
pixels, bit for bit (NaN positions and payloads included).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from ocog_lib.cog.decode import decode_tile
from ocog_lib.cog.tiff_index import parse_tiff
from ocog_lib.storage import open_source

GDAL_CACHE_BYTES = 64 * 1024 * 1024  # rasterio.Env takes bytes for GDAL_CACHEMAX


def first_mismatch(path: str | Path) -> str | None:
    """Where ocog's decoder and GDAL disagree on a local TIFF (None: nowhere, or GDAL reads
    it for the engine anyway because the fast path cannot)."""
    src = open_source(path)
    idx = parse_tiff(src)
    if not idx.fast_path:
        return None
    lv = idx.levels[0]
    th, tw = lv.tile_height, lv.tile_width
    planes = idx.bands if idx.planar == 2 else 1
    bits = f"u{idx.dtype.itemsize}"  # compare bit patterns: NaN == NaN, 0.0 != -0.0
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES), rasterio.open(path) as ds:
        for ty in range(lv.tiles_down):
            h = min(th, idx.height - ty * th)
            ref = ds.read(window=Window(0, ty * th, idx.width, h))  # one row of tiles
            for tx in range(lv.tiles_across):
                w = min(tw, idx.width - tx * tw)
                for plane in range(planes):
                    off, n = idx.tile_entry(0, plane, ty, tx)
                    tile = decode_tile(idx, src.read(off, n) if n else b"")[:, :h, :w]
                    want = ref[plane : plane + 1] if planes > 1 else ref
                    got, want = tile.view(bits), want[:, :, tx * tw : tx * tw + w].view(bits)
                    if not np.array_equal(got, want):
                        return f"tile (row {ty}, col {tx}, plane {plane})"
    return None
