"""A stack's zoom range in a TMS: its finest zoom and how many overview levels lie above.

The finest zoom is rio-tiler's `maxzoom` rule: the TMS zoom whose resolution is nearest
the finest band's, once warped into the TMS's CRS. Past it a tile only magnifies pixels
(`ocog serve` allows `ServeConfig.max_overzoom` zooms further); `ocog bench tiles` measures
from the coarsest overview's zoom to one past the finest. Coarse zooms are the cube's to
refuse (a view needing too many source pixels).
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


def overview_levels(stack: SceneStack) -> int:
    """The most overview levels any band of the stack's first scene has."""
    scene = stack.scenes[0]
    return max(len(raster_info(stack.uri(scene, b)).geometry.overviews) for b in stack.bands)
