"""A raster's tile grid: how many tiles, where each lies, which ones a window touches.

One geometry for every layer that reasons in tiles: the parsed TIFF levels, the engine's
rasters, the samplers, the wire-cost footprint and the decode limit. Tiles are numbered
from the top-left, `ty` down and `tx` across; edge tiles may be partial (the raster need
not be a multiple of the tile size), and a tile's stored size is always the full tile.
"""

from __future__ import annotations

from dataclasses import dataclass


def tile_span(start: int, length: int, tile: int) -> range:
    """Indices of the `tile`-px tiles that pixels start .. start + length - 1 touch."""
    return range(start // tile, (start + length - 1) // tile + 1)


@dataclass(frozen=True)
class TileGrid:
    """A height x width raster cut into tile_height x tile_width tiles."""

    height: int
    width: int
    tile_height: int
    tile_width: int

    @property
    def tiles_down(self) -> int:
        return -(-self.height // self.tile_height)

    @property
    def tiles_across(self) -> int:
        return -(-self.width // self.tile_width)

    @property
    def tile_count(self) -> int:
        return self.tiles_down * self.tiles_across

    def tile_rect(self, ty: int, tx: int) -> tuple[int, int, int, int]:
        """(top, left, height, width) of tile (ty, tx), clipped to the raster."""
        top, left = ty * self.tile_height, tx * self.tile_width
        return top, left, min(self.tile_height, self.height - top), min(
            self.tile_width, self.width - left
        )

    def tiles_for_window(self, row: int, col: int, height: int, width: int) -> tuple[range, range]:
        """(tile rows, tile cols) a window touches; the window must lie inside the raster."""
        return tile_span(row, height, self.tile_height), tile_span(col, width, self.tile_width)

    def window_tiles(self, row: int, col: int, height: int, width: int) -> list[tuple[int, int]]:
        """(ty, tx) of every tile a window touches, row by row."""
        rows, cols = self.tiles_for_window(row, col, height, width)
        return [(ty, tx) for ty in rows for tx in cols]
