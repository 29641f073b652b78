"""H3 cells as keys of embedded patches: which resolution, and the cell of each centre.

A patch is keyed by the cell holding its centre. The resolution is the finest whose
average hexagon edge (h3's `average_hexagon_edge_length`, metres) is at least the patch's
ground size (pixel size x patch edge): a cell is then as large as a patch or larger, so
neighbouring patches rarely skip a cell, and a cell gathers the few patches around it
rather than being finer than what an embedding describes. 10 m pixels x 64 px = 640 m
gives resolution 7 (edge 1406 m), VectorGeo's; 30 m x 64 px = 1.9 km gives 6 (3.7 km).

h3 (4.x) converts one point per call: the loops run over plain floats, about 2 us each.
"""

from __future__ import annotations

import h3
import h3.api.basic_int as h3int
import numpy as np

from ocog_lib.errors import InputError

MAX_RESOLUTION = 15


def resolution_for(pixel_size_m: float, patch_px: int) -> int:
    """The finest H3 resolution whose average cell edge is >= the patch's ground size."""
    if not pixel_size_m > 0 or not np.isfinite(pixel_size_m):
        raise InputError(f"pixel size {pixel_size_m!r} m", "must be a positive number")
    if patch_px < 1:
        raise InputError(f"patch {patch_px} px", "must be positive")
    ground = float(pixel_size_m) * int(patch_px)
    for res in range(MAX_RESOLUTION, -1, -1):
        if h3.average_hexagon_edge_length(res, unit="m") >= ground:
            return res
    return 0  # larger than a resolution-0 cell: the coarsest there is


def cells_for(lon: np.ndarray, lat: np.ndarray, res: int) -> np.ndarray:
    """uint64 H3 cells of the points; InputError naming the first point outside lon/lat."""
    lon = np.asarray(lon, dtype=np.float64).ravel()
    lat = np.asarray(lat, dtype=np.float64).ravel()
    if lon.shape != lat.shape:
        raise InputError("cells_for", f"{len(lon)} longitudes for {len(lat)} latitudes")
    if not 0 <= int(res) <= MAX_RESOLUTION:
        raise InputError(f"H3 resolution {res}", f"must be 0..{MAX_RESOLUTION}")
    bad = ~(np.isfinite(lon) & np.isfinite(lat) & (np.abs(lat) <= 90) & (np.abs(lon) <= 180))
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"point ({lon[i]}, {lat[i]})", "not a longitude/latitude in degrees")
    r = int(res)
    cells = (h3int.latlng_to_cell(y, x, r) for y, x in zip(lat.tolist(), lon.tolist(), strict=True))
    return np.fromiter(cells, dtype=np.uint64, count=len(lon))


def valid_cells(cells: np.ndarray) -> np.ndarray:
    """Per cell: whether it is a valid H3 cell index (0, edges and vertices are not)."""
    flat = np.asarray(cells).astype(np.uint64, copy=False).ravel()
    return np.fromiter((h3int.is_valid_cell(c) for c in flat.tolist()), dtype=bool,
                       count=len(flat))  # fmt: skip
