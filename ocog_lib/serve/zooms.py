"""How far a map may zoom into a stack: its finest TMS zoom, plus a bounded overzoom.

The finest zoom is rio-tiler's `maxzoom` rule: the TMS zoom whose resolution is nearest
the finest band's, once warped into the TMS's CRS. Past it a tile only magnifies pixels;
`ServeConfig.max_overzoom` zooms further are served, beyond that a tile is "outside the
data" (404). Coarse zooms are the cube's to refuse (a view needing too many source pixels).
"""

from __future__ import annotations

from ocog_lib.cube.sources import raster_info
from ocog_lib.cube.stack import SceneStack


def finest_zoom(stack: SceneStack, tms_name: str) -> int:
    """The stack's finest zoom in the TMS, from its first scene's bands (one header each)."""
    import morecantile
    from rasterio.warp import calculate_default_transform

    tms = morecantile.tms.get(tms_name)
    scene = stack.scenes[0]
    finest = None
    for band in stack.bands:
        g = raster_info(stack.uri(scene, band)).geometry
        left, top = g.transform * (0, 0)
        right, bottom = g.transform * (g.width, g.height)
        affine, _, _ = calculate_default_transform(
            g.crs, tms.rasterio_crs, g.width, g.height, left=min(left, right),
            bottom=min(top, bottom), right=max(left, right), top=max(top, bottom))
        res = max(abs(affine.a), abs(affine.e))
        finest = res if finest is None else min(finest, res)
    return int(tms.zoom_for_res(finest))
