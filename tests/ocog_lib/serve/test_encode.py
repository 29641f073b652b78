"""Tile encodings: the PNG decodes to the same RGBA (PIL), the GeoTIFF lies where it should."""

from __future__ import annotations

import io

import numpy as np

from ocog_lib.serve.colormaps import COLORMAPS, colorize, colormap_table
from ocog_lib.serve.encode import encode_npy, encode_png, encode_tif


def test_png_round_trips_through_pil():
    from PIL import Image

    rgba = np.random.default_rng(0).integers(0, 256, (37, 53, 4), dtype=np.uint8)
    with Image.open(io.BytesIO(encode_png(rgba))) as im:
        assert im.mode == "RGBA" and im.size == (53, 37)
        np.testing.assert_array_equal(np.asarray(im), rgba)


def test_colorize_maps_the_stretch_to_the_table_ends_and_nan_to_transparent():
    data = np.array([[-2.0, -1.0, 0.0], [1.0, 5.0, np.nan]], dtype=np.float32)
    for name in COLORMAPS:
        table = colormap_table(name)
        assert table.shape == (256, 4) and table.dtype == np.uint8
        rgba = colorize(data, (-1.0, 1.0), name)
        np.testing.assert_array_equal(rgba[0, 0], table[0])
        np.testing.assert_array_equal(rgba[0, 1], table[0])
        np.testing.assert_array_equal(rgba[0, 2], table[128])  # rint(127.5) = 128
        np.testing.assert_array_equal(rgba[1, 0], table[255])
        np.testing.assert_array_equal(rgba[1, 1], table[255])
        np.testing.assert_array_equal(rgba[1, 2], [0, 0, 0, 0])
    assert (colormap_table("greys")[0, :3] < colormap_table("greys")[255, :3]).all()


def test_npy_and_tif_keep_nan_and_georeference():
    from rasterio.io import MemoryFile

    data = np.arange(256 * 256, dtype=np.float32).reshape(256, 256)
    data[:10] = np.nan
    np.testing.assert_array_equal(np.load(io.BytesIO(encode_npy(data))), data)
    bounds = (-8400000.0, 4650000.0, -8397554.0, 4652446.0)
    with MemoryFile(encode_tif(data, bounds, "EPSG:3857")) as mem, mem.open() as ds:
        assert ds.crs.to_epsg() == 3857 and np.isnan(ds.nodata)
        np.testing.assert_allclose(tuple(ds.bounds), bounds)
        np.testing.assert_array_equal(ds.read(1), data)
