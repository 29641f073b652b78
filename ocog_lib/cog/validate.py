"""Checks of a written COG: its layout, its pixels, and ocog's decoder on it.

- validate_cog: rio-cogeo's COG rules.
- check_lossless: GDAL's read of the COG equals GDAL's read of its source.
- first_mismatch: ocog's tile decoder equals GDAL's read of the COG. The lossless check
  compares GDAL with GDAL, so a decoder bug of ocog's own passes it (LERC float tiles with
  NaN once came back 0.0 and scrambled, and every variant check was green); this one
  decodes every stored full-resolution tile the way the engine does and compares it with
  GDAL's read of the same pixels, bit for bit (NaN positions and payloads included).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio._err import CPLE_BaseError  # GDAL errors raised mid-read (truncated files)
from rasterio.errors import RasterioError
from rasterio.windows import Window

from ocog_lib.cog.decode import decode_tile
from ocog_lib.cog.tiff_index import parse_tiff
from ocog_lib.errors import InputError
from ocog_lib.storage import open_source

CHECK_ROWS = 512  # rows per block when comparing pixels
CHECK_CACHE_BYTES = 64 * 1024 * 1024  # rasterio.Env takes bytes for GDAL_CACHEMAX
GDAL_ERRORS = (RasterioError, CPLE_BaseError)


@dataclass(frozen=True)
class CogValidation:
    valid: bool
    errors: list[str]
    warnings: list[str]


def validate_cog(path: Path) -> CogValidation:
    """rio-cogeo's COG rules (tiling, IFD and overview order, header before data)."""
    from rio_cogeo.cogeo import cog_validate

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    try:
        valid, errors, warnings = cog_validate(path, quiet=True)
    except GDAL_ERRORS as exc:
        raise InputError(path, f"not a readable TIFF ({exc})") from exc
    return CogValidation(valid=bool(valid), errors=list(errors), warnings=list(warnings))


def check_lossless(src: Path, dst: Path) -> bool:
    """True when `dst` holds exactly `src`'s full-resolution pixels (read in row blocks)."""
    src, dst = Path(src), Path(dst)
    for p in (src, dst):
        if not p.is_file():
            raise InputError(p, "no such file")
    try:
        with (
            rasterio.Env(GDAL_CACHEMAX=CHECK_CACHE_BYTES),
            rasterio.open(src) as a,
            rasterio.open(dst) as b,
        ):
            if (a.count, a.height, a.width, a.dtypes) != (b.count, b.height, b.width, b.dtypes):
                return False
            floating = np.dtype(a.dtypes[0]).kind == "f"
            for y0 in range(0, a.height, CHECK_ROWS):
                win = Window(0, y0, a.width, min(CHECK_ROWS, a.height - y0))
                if not np.array_equal(a.read(window=win), b.read(window=win), equal_nan=floating):
                    return False
    except GDAL_ERRORS as exc:
        raise InputError(f"{src} vs {dst}", f"could not read both ({exc})") from exc
    return True


def first_mismatch(path: str | Path) -> str | None:
    """Where ocog's decoder and GDAL disagree on a local TIFF (None: nowhere, or GDAL reads
    it for the engine anyway because the fast path cannot)."""
    src = open_source(path)
    idx = parse_tiff(src)
    if not idx.fast_path:
        return None
    grid = idx.grid
    planes = idx.bands if idx.planar == 2 else 1
    bits = f"u{idx.dtype.itemsize}"  # compare bit patterns: NaN == NaN, 0.0 != -0.0
    with rasterio.Env(GDAL_CACHEMAX=CHECK_CACHE_BYTES), rasterio.open(path) as ds:
        for ty in range(grid.tiles_down):
            top, _, h, _ = grid.tile_rect(ty, 0)
            ref = ds.read(window=Window(0, top, grid.width, h))  # one row of tiles
            for tx in range(grid.tiles_across):
                _, left, h, w = grid.tile_rect(ty, tx)
                for plane in range(planes):
                    off, n = idx.tile_entry(0, plane, ty, tx)
                    tile = decode_tile(idx, src.read(off, n) if n else b"")[:, :h, :w]
                    want = ref[plane : plane + 1] if planes > 1 else ref
                    got, want = tile.view(bits), want[:, :, left : left + w].view(bits)
                    if not np.array_equal(got, want):
                        return f"tile (row {ty}, col {tx}, plane {plane})"
    return None
