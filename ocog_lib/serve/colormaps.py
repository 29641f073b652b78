"""The named colormaps a PNG tile can use, as 256-entry RGBA tables taken from matplotlib.

The stretch (`rescale`) is fixed per request, never derived from a tile's own values, so
one value has one colour on every tile of a view.
"""

from __future__ import annotations

import numpy as np

# our name -> matplotlib's; greys runs black (low) to white (high), like a band shown raw
_MATPLOTLIB_NAMES = {"viridis": "viridis", "rdylgn": "RdYlGn", "greys": "Greys_r"}
COLORMAPS: tuple[str, ...] = tuple(_MATPLOTLIB_NAMES)


def _tables() -> dict[str, np.ndarray]:
    import matplotlib

    ramp = np.linspace(0.0, 1.0, 256)
    return {ours: np.ascontiguousarray(matplotlib.colormaps[theirs](ramp, bytes=True),
                                       dtype=np.uint8)
            for ours, theirs in _MATPLOTLIB_NAMES.items()}  # fmt: skip


_TABLES = _tables()


def colormap_table(name: str) -> np.ndarray:
    """(256, 4) uint8 RGBA; the caller has checked `name` is in COLORMAPS."""
    return _TABLES[name]


def colorize(data: np.ndarray, rescale: tuple[float, float], name: str) -> np.ndarray:
    """(h, w, 4) uint8: `rescale` maps to the table's ends (clipped), NaN is transparent."""
    lo, hi = rescale
    valid = np.isfinite(data)
    scaled = (data.astype(np.float64) - lo) * (255.0 / (hi - lo))
    index = np.clip(np.rint(np.where(valid, scaled, 0.0)), 0, 255).astype(np.uint8)
    rgba = colormap_table(name)[index]
    rgba[~valid] = 0
    return rgba
