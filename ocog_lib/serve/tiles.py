"""`TileAddress`: a tile's TMS, z/x/y and format, checked against the tile matrix set.

The TMS comes from morecantile's registry (WebMercatorQuad, WorldCRS84Quad, ...); an
unknown name, or x/y past the matrix at that zoom, is a 404 naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ocog_lib.serve.errors import ApiError
from ocog_lib.serve.params import FORMATS


@lru_cache(maxsize=32)
def _tms(name: str):
    import morecantile

    try:
        return morecantile.tms.get(name)
    except morecantile.errors.InvalidIdentifier:
        known = ", ".join(morecantile.tms.list())
        raise ApiError(f"tms={name}", f"unknown tile matrix set; one of {known}", status=404,
                       error="unknown tms") from None  # fmt: skip


@dataclass(frozen=True)
class TileAddress:
    tms: str
    z: int
    x: int
    y: int
    fmt: str
    size: int = 256

    @classmethod
    def checked(cls, tms: str, z: int, x: int, y: int, fmt: str, size: int) -> TileAddress:
        if fmt not in FORMATS:
            raise ApiError(f"fmt={fmt}", f"unknown tile format; one of {', '.join(FORMATS)}",
                           status=404, error="unknown format")  # fmt: skip
        matrix_set = _tms(tms)
        if not matrix_set.minzoom <= z <= matrix_set.maxzoom:
            raise ApiError(f"z={z}", f"outside {tms}'s zooms {matrix_set.minzoom}.."
                           f"{matrix_set.maxzoom}", status=404, error="tile not found")  # fmt: skip
        matrix = matrix_set.matrix(z)
        if not (0 <= x < matrix.matrixWidth and 0 <= y < matrix.matrixHeight):
            raise ApiError(f"{tms}/{z}/{x}/{y}", f"outside the tile matrix at zoom {z} "
                           f"({matrix.matrixWidth} x {matrix.matrixHeight} tiles)",
                           status=404, error="tile not found")  # fmt: skip
        return cls(tms, z, x, y, fmt, size)

    def key_args(self) -> dict:
        return {"tms": self.tms, "z": self.z, "x": self.x, "y": self.y, "size": self.size}

    def bounds(self) -> tuple[float, float, float, float]:
        import morecantile

        b = _tms(self.tms).xy_bounds(morecantile.Tile(self.x, self.y, self.z))
        return (b.left, b.bottom, b.right, b.top)

    def crs(self):
        return _tms(self.tms).rasterio_crs
