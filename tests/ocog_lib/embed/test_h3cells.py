"""H3 keys: the resolution from the pixel size, cells exactly as h3 computes them."""

import h3
import numpy as np
import pytest

from ocog_lib.embed.h3cells import cells_for, resolution_for, valid_cells
from ocog_lib.errors import InputError


def test_resolution_is_the_finest_whose_edge_covers_the_patch():
    assert resolution_for(10, 64) == 7  # 640 m: res 7 edge 1406 m, res 8 531 m (VectorGeo's 7)
    assert resolution_for(30, 64) == 6  # 1920 m: res 6 edge 3725 m
    assert resolution_for(0.5, 64) == 10  # 32 m: res 10 edge 75.9 m, res 11 28.7 m
    assert resolution_for(1e5, 64) == 0  # larger than any cell: the coarsest
    for size in (1.0, 10.0, 30.0, 250.0):
        res = resolution_for(size, 64)
        assert h3.average_hexagon_edge_length(res, unit="m") >= size * 64
        assert res == 15 or h3.average_hexagon_edge_length(res + 1, unit="m") < size * 64
    with pytest.raises(InputError, match="pixel size"):
        resolution_for(0, 64)
    with pytest.raises(InputError, match="pixel size"):
        resolution_for(float("nan"), 64)


def test_cells_match_h3_point_by_point():
    rng = np.random.default_rng(0)
    lon, lat = rng.uniform(-180, 180, 200), rng.uniform(-89, 89, 200)
    for res in (0, 7, 15):
        cells = cells_for(lon, lat, res)
        assert cells.dtype == np.uint64 and cells.shape == (200,)
        expect = [h3.str_to_int(h3.latlng_to_cell(y, x, res))
                  for x, y in zip(lon, lat, strict=True)]
        np.testing.assert_array_equal(cells, np.array(expect, dtype=np.uint64))
        assert valid_cells(cells).all()
        assert {h3.get_resolution(h3.int_to_str(int(c))) for c in cells[:5]} == {res}
    assert cells_for([], [], 7).shape == (0,)


def test_bad_points_and_cells():
    with pytest.raises(InputError, match=r"\(0.0, 95.0\)"):
        cells_for([10.0, 0.0], [40.0, 95.0], 7)
    with pytest.raises(InputError, match="not a longitude"):
        cells_for([np.nan], [0.0], 7)
    with pytest.raises(InputError, match="resolution"):
        cells_for([0.0], [0.0], 16)
    good = cells_for([-74.0], [40.7], 7)[0]
    flags = valid_cells(np.array([good, 0, 2**64 - 1, good + np.uint64(1)], dtype=np.uint64))
    np.testing.assert_array_equal(flags, [True, False, False, False])
