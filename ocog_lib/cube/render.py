"""A reduced view as a picture: named colormaps, a fixed stretch, and a PNG writer.

Here, below the tile server, so a cube product (a composite's preview) and the server's
PNG tiles colour one value the same way. The tables are matplotlib's, built on first use
(importing this module does not import matplotlib). A tile's stretch (`rescale`) is fixed
per request, never derived from the tile's own values, so one value has one colour on
every tile of a view; a single preview may take its stretch from its own percentiles.
The PNG writer is a few lines of zlib (no imaging library needed).
"""

from __future__ import annotations

import math
import struct
import zlib
from functools import cache

import numpy as np

from ocog_lib.errors import InputError

# our name -> matplotlib's; greys runs black (low) to white (high), like a band shown raw
_MATPLOTLIB_NAMES = {"viridis": "viridis", "rdylgn": "RdYlGn", "greys": "Greys_r"}
COLORMAPS: tuple[str, ...] = tuple(_MATPLOTLIB_NAMES)
STRETCH_PERCENTILES = (2.0, 98.0)  # a preview's own stretch when none is given


@cache
def colormap_table(name: str) -> np.ndarray:
    """(256, 4) uint8 RGBA; the caller has checked `name` is in COLORMAPS."""
    import matplotlib

    ramp = np.linspace(0.0, 1.0, 256)
    table = matplotlib.colormaps[_MATPLOTLIB_NAMES[name]](ramp, bytes=True)
    table = np.ascontiguousarray(table, dtype=np.uint8)
    table.setflags(write=False)
    return table


def colorize(data: np.ndarray, rescale: tuple[float, float], name: str) -> np.ndarray:
    """(h, w, 4) uint8: `rescale` maps to the table's ends (clipped), NaN is transparent."""
    lo, hi = rescale
    valid = np.isfinite(data)
    scaled = (data.astype(np.float64) - lo) * (255.0 / (hi - lo))
    index = np.clip(np.rint(np.where(valid, scaled, 0.0)), 0, 255).astype(np.uint8)
    rgba = colormap_table(name)[index]
    rgba[~valid] = 0
    return rgba


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


def auto_stretch(data: np.ndarray) -> tuple[float, float]:
    """The 2nd..98th percentile of the finite values (lo < hi always; (0, 1) when none)."""
    values = data[np.isfinite(data)]
    if not values.size:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(values, STRETCH_PERCENTILES))
    if not hi > lo:
        lo, hi = lo - 0.5, lo + 0.5
    return lo, hi


def check_colormap(name: str, rescale: tuple[float, float] | None) -> None:
    """Refuse an unknown colormap or a stretch that is not two finite numbers lo < hi."""
    if name not in COLORMAPS:
        raise InputError(f"colormap={name}", f"unknown colormap; one of {', '.join(COLORMAPS)}")
    if rescale is None:
        return
    ok = len(rescale) == 2 and all(isinstance(v, int | float) and math.isfinite(v)
                                   for v in rescale)  # fmt: skip
    if not ok or not rescale[0] < rescale[1]:
        raise InputError(f"rescale={rescale}", "need two finite numbers lo < hi")


def preview_png(data: np.ndarray, *, colormap: str = "viridis",
                rescale: tuple[float, float] | None = None,
                max_edge: int = 256) -> tuple[bytes, tuple[float, float]]:  # fmt: skip
    """A small PNG of a 2-D float array (every step-th pixel, longest edge <= max_edge)
    and the stretch it used: `rescale`, else the finite values' 2nd..98th percentile."""
    check_colormap(colormap, rescale)
    if data.ndim != 2 or not isinstance(max_edge, int) or max_edge < 1:
        raise InputError(f"preview of shape {data.shape}, max_edge={max_edge!r}",
                         "need a 2-D array and max_edge >= 1")  # fmt: skip
    step = max(1, math.ceil(max(data.shape) / max_edge))
    small = data[::step, ::step]
    stretch = tuple(float(v) for v in rescale) if rescale is not None else auto_stretch(data)
    return encode_png(colorize(small, stretch, colormap)), stretch
