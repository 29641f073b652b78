"""H3 cells as GeoJSON rings (ocog_lib/embed/cellshapes.py)."""

from __future__ import annotations

import h3

from ocog_lib.embed.cellshapes import cell_ring


def test_a_ring_is_h3s_boundary_as_lon_lat_closed():
    cell = h3.latlng_to_cell(38.9, -77.0, 8)
    ring = cell_ring(cell)
    assert ring[0] == ring[-1]
    assert [(lat, lon) for lon, lat in ring[:-1]] == list(h3.cell_to_boundary(cell))


def test_a_cell_across_the_antimeridian_stays_one_small_hexagon():
    cell = h3.latlng_to_cell(0.0, 179.99, 3)  # edge ~60 km: it spans 180
    plain = [lng for _, lng in h3.cell_to_boundary(cell)]
    assert max(plain) - min(plain) > 180  # the trap: in plain lon it spans the globe
    lons = [lon for lon, _ in cell_ring(cell)]
    assert max(lons) - min(lons) < 5 and max(lons) > 180
