"""The named colormaps a PNG tile can use: `ocog_lib.cube.render`'s, so a tile and a cube
product (a composite's preview) colour one value alike.

The stretch (`rescale`) is fixed per request, never derived from a tile's own values, so
one value has one colour on every tile of a view.
"""

from __future__ import annotations

from ocog_lib.cube.render import COLORMAPS, colorize, colormap_table

__all__ = ["COLORMAPS", "colorize", "colormap_table"]
