"""A period's composite COG holds read_bbox's pixels bit for bit, and numpy's nanmedian over
the scenes as rasterio reads them; it lands under its name whole or not at all."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from ocog_lib.cube.composite import CompositeSpec, write_cog, write_composite
from ocog_lib.cube.errors import NoScenes
from ocog_lib.cube.reads import CubeArray, read_bbox
from ocog_lib.cube.render import auto_stretch, colormap_table
from ocog_lib.cube.stack import SceneStack
from ocog_lib.data.timestack import build_time_stack
from ocog_lib.errors import InputError

NDVI = "(nir-red)/(nir+red)"
SCL_DROPPED = (0, 1, 3, 8, 9, 10)  # nodata, defective, shadow, cloud medium/high, cirrus
PERIOD = ("2024-01-01", "2024-09-30")  # three of the four derived dates (Jan, Apr, Jul)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> SceneStack:
    """Four dates of the sample's derived Sentinel-2 stack, 128 px (SCL on the same grid)."""
    return SceneStack.load(build_time_stack(tmp_path_factory.mktemp("ts") / "s2", dates=4,
                                            size=128))  # fmt: skip


def _read(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as ds:
        return ds.read(1), dict(ds.profile, bounds=tuple(ds.bounds), overviews=ds.overviews(1))


def _numpy_median(stack: SceneStack, start: str, end: str) -> np.ndarray:
    """NDVI per scene from rasterio's reads (DN 0 and dropped SCL classes as NaN), then
    numpy's nanmedian over time."""
    layers = []
    for scene in stack.select(start, end).stack.scenes:
        with rasterio.open(stack.uri(scene, "B04")) as r, rasterio.open(
                stack.uri(scene, "B08")) as n, rasterio.open(stack.uri(scene, "SCL")) as s:
            red, nir, scl = (ds.read(1) for ds in (r, n, s))
        red, nir = (np.where(a == 0, np.nan, a.astype(np.float64)) for a in (red, nir))
        with np.errstate(all="ignore"):
            ndvi = ((nir - red) / (nir + red)).astype(np.float32)
        ndvi[np.isin(scl, SCL_DROPPED)] = np.nan
        layers.append(ndvi)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels stay NaN
        return np.nanmedian(np.stack(layers), axis=0)


def test_composite_is_read_bbox_and_numpy_nanmedian_bit_for_bit(stack, tmp_path):
    spec = CompositeSpec(NDVI, "median", *PERIOD, colormap="rdylgn")
    out = write_composite(stack, spec, tmp_path / "q" / "c.tif")
    data, prof = _read(out.path)
    cube = read_bbox(stack, out.bbox, crs=out.crs, resolution=out.resolution, expression=NDVI,
                     reducer="median", start=PERIOD[0], end=PERIOD[1])  # fmt: skip
    np.testing.assert_array_equal(data, cube.data)
    np.testing.assert_array_equal(data, _numpy_median(stack, *PERIOD))
    nan = np.isnan(data)
    assert 0 < nan.sum() < nan.size  # all-cloud and nodata pixels stay NaN, never 0

    with rasterio.open(stack.uri(stack.scenes[0], "B04")) as src:  # the native grid
        assert prof["transform"] == src.transform and prof["crs"] == src.crs
    assert prof["dtype"] == "float32" and np.isnan(prof["nodata"]) and prof["blockxsize"] == 256
    assert prof["overviews"] == [2]  # 128 px: one overview of 64
    assert out.scenes == tuple(s.id for s in stack.scenes[:3])
    assert out.shape == data.shape == (128, 128) and out.bytes == out.path.stat().st_size
    assert out.valid_fraction == pytest.approx(1 - nan.mean())
    assert out.compute_ms > 0 and out.write_ms > 0
    assert out.stretch == auto_stretch(data)

    from PIL import Image

    with Image.open(io.BytesIO(out.preview_png)) as im:
        rgba = np.asarray(im)
    assert im.mode == "RGBA" and rgba.shape == (128, 128, 4)
    np.testing.assert_array_equal(rgba[..., 3] == 0, nan)  # nodata is transparent
    table = colormap_table("rdylgn")
    lo, hi = out.stretch
    i, j = np.argwhere(np.isfinite(data) & (data >= hi))[0]
    np.testing.assert_array_equal(rgba[i, j], table[255])


def test_a_lon_lat_box_snaps_to_the_native_grid(stack, tmp_path):
    from rasterio.warp import transform_bounds

    full = write_composite(stack, CompositeSpec(NDVI, "max"), tmp_path / "full.tif")
    t = Affine(*rasterio.open(full.path).transform[:6])
    inner = (t.c + 30.5 * t.a, t.f + 90.2 * t.e, t.c + 70.1 * t.a, t.f + 40.7 * t.e)
    lonlat = transform_bounds(full.crs, "EPSG:4326", *inner, densify_pts=21)
    part = write_composite(stack, CompositeSpec(NDVI, "max", bbox=lonlat),
                           tmp_path / "part.tif")  # fmt: skip
    data, prof = _read(part.path)
    col, row = (round(v) for v in ~t * (prof["transform"].c, prof["transform"].f))
    assert prof["transform"] == t * Affine.translation(col, row)  # whole source pixels
    np.testing.assert_array_equal(data, _read(full.path)[0][row : row + data.shape[0],
                                                            col : col + data.shape[1]])
    assert 0 < data.shape[0] < 128 and 0 < data.shape[1] < 128


def test_a_failed_write_leaves_the_old_file_and_no_temporary(stack, tmp_path):
    final = tmp_path / "c.tif"
    good = write_composite(stack, CompositeSpec(NDVI, "mean"), final)
    before = final.read_bytes()

    class Exploding(np.ndarray):
        def astype(self, *args, **kwargs):
            raise OSError("disk full (simulated)")

    data = np.zeros(good.shape, np.float32).view(Exploding)
    cube = CubeArray(data, Affine(10, 0, 0, 0, -10, 0), good.crs, ())
    with pytest.raises(OSError, match="simulated"):
        write_cog(final, cube)
    assert final.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.tif"]


def test_refusals_name_the_input_and_write_nothing(stack, tmp_path):
    path = tmp_path / "c.tif"
    with pytest.raises(NoScenes, match="start=2030-01-01"):
        write_composite(stack, CompositeSpec(NDVI, start="2030-01-01", end="2030-03-31"), path)
    with pytest.raises(InputError, match="colormap=jet"):
        write_composite(stack, CompositeSpec(NDVI, colormap="jet"), path)
    with pytest.raises(InputError, match="bbox="):
        write_composite(stack, CompositeSpec(NDVI, bbox=(10, 0, 0, 1)), path)
    with pytest.raises(InputError, match="unknown band|not a band|swir"):
        write_composite(stack, CompositeSpec("swir / red"), path)
    assert not path.exists() and not list(tmp_path.iterdir())


def test_auto_stretch_is_the_values_2_to_98_percent():
    data = np.arange(101, dtype=np.float32).reshape(1, 101)
    data[0, :5] = np.nan
    assert auto_stretch(data) == pytest.approx(tuple(np.percentile(np.arange(5, 101), [2, 98])))
    assert auto_stretch(np.full((3, 3), np.nan, np.float32)) == (0.0, 1.0)
    assert auto_stretch(np.full((3, 3), 7.0, np.float32)) == (6.5, 7.5)
