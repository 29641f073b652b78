"""Image/mask pairs: each raster is read on its own tile grid, and a pair must line up.

Every pixel and label is compared with rasterio's windowed read of the same window, for
masks tiled unlike their images (128/256/512 blocks, striped through GDAL), compressed or
not (uncompressed local files take the direct memory-map path), with and without tile
reuse (reuse 4 also stores tiles band-first).
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from ocog_lib.errors import InputError
from ocog_lib.stream.dataset import make_stream
from ocog_lib.stream.samplers import tiles_per_visit
from tests.support.rasters import TRANSFORM, real_pixels, write_raster

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

H, W = 600, 560  # two 512-px tiles each way, five 128-px ones
LAYOUTS = ("128", "256", "512", "strip")
COMPRESS = {"DEFLATE": dict(compress="DEFLATE", predictor=2), "NONE": dict(compress="NONE")}


def _write(path, arr, layout, compress):
    opts = dict(COMPRESS[compress])
    if arr.shape[0] == 1:
        opts.pop("predictor", None)
    if layout == "strip":  # no tiles: the fast path hands it to GDAL
        return write_raster(path, arr, driver="GTiff", **opts)
    return write_raster(path, arr, blocksize=int(layout), **opts)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(image, mask) paths by (layout, compression); labels derived from the pixels."""
    root = tmp_path_factory.mktemp("pairs")
    arr = real_pixels(3, H, W, "uint16", seed=3)
    labels = ((arr[2] > arr[1]).astype(np.uint8) + 2 * (arr[0] > 900))[None].astype(np.uint8)
    out = {}
    for layout in LAYOUTS:
        for comp in COMPRESS:
            out["img", layout, comp] = _write(root / f"i{layout}{comp}.tif", arr, layout, comp)
            out["msk", layout, comp] = _write(root / f"m{layout}{comp}.tif", labels, layout, comp)
    return out


def _assert_pairs_match(stream, image, mask, bands=None):
    p = stream.cfg.patch_size
    n = 0
    with rasterio.open(image) as img, rasterio.open(mask) as msk:
        for batch in stream:
            for b, (_, row, col) in enumerate(batch["window"].tolist()):
                idx = [i + 1 for i in bands] if bands else None
                want = img.read(idx, window=Window(col, row, p, p))
                np.testing.assert_array_equal(batch["image"][b].numpy(), want)
                want_m = msk.read(1, window=Window(col, row, p, p))
                np.testing.assert_array_equal(
                    batch["mask"][b].numpy(), want_m, err_msg=f"labels at {row},{col}"
                )
                n += 1
    stream.close()
    return n


@pytest.mark.parametrize("reuse", [1, 4])
@pytest.mark.parametrize("comps", [("DEFLATE", "NONE"), ("NONE", "DEFLATE")])
@pytest.mark.parametrize("mask_layout", LAYOUTS)
@pytest.mark.parametrize("image_layout", LAYOUTS)
def test_labels_match_rasterio_whatever_the_tiling(files, image_layout, mask_layout, comps, reuse):
    image, mask = files["img", image_layout, comps[0]], files["msk", mask_layout, comps[1]]
    bands = None if reuse == 1 else (2, 0)
    stream = make_stream(
        [image], [mask], sampler="random", patch_size=100, batch_size=4, length=12,
        seed=len(image_layout) + reuse, threads=2, patches_per_tile=reuse, bands=bands,
    )  # fmt: skip
    assert stream.cfg.band_first_tiles() == (reuse > 2)
    assert _assert_pairs_match(stream, image, mask, bands) == 12


@pytest.mark.parametrize("image_layout,mask_layout", [("128", "512"), ("512", "128")])
def test_grid_labels_cover_the_raster_exactly(files, image_layout, mask_layout):
    image, mask = files["img", image_layout, "DEFLATE"], files["msk", mask_layout, "DEFLATE"]
    stream = make_stream([image], [mask], sampler="grid", patch_size=150, batch_size=8)
    assert _assert_pairs_match(stream, image, mask) == len(stream.windows) == 16


def test_shuffle_cap_counts_mask_tiles_on_the_masks_grid(files):
    # visits anchored in 512-px image tiles reach 5 x 5 of the mask's 128-px tiles, not 2 x 2
    image, mask = files["img", "512", "DEFLATE"], files["msk", "128", "DEFLATE"]
    visit = 2 * 2 * 512 * 512 * 3 * 2 + 5 * 5 * 128 * 128
    assert tiles_per_visit("random", 100, 128, anchor=512) == 5
    s = make_stream(
        [image], [mask], sampler="random", patch_size=100, patches_per_tile=4,
        shuffle_tiles=32, cache_mb=10.5 * visit / 2**20, length=8,
    )  # fmt: skip
    assert s.cfg.shuffle_tiles == 10  # 11 with the image's 2 x 2 tiles counted for the mask


# ---- georeferencing ------------------------------------------------------------------
ROTATED = rasterio.Affine(10, 0.5, 500000, 0.25, -10, 4000000)
CUSTOM = "+proj=utm +zone=18 +ellps=GRS80 +towgs84=1,2,3,0,0,0,0 +units=m +no_defs"


@pytest.fixture(scope="module")
def labels():
    return (real_pixels(1, 256, 256, "uint8", seed=8) > 60).astype(np.uint8)


def _pair(root, labels, image_geo: dict, mask_geo: dict, mask_layout="128"):
    img = write_raster(root / "img.tif", real_pixels(2, 256, 256, "uint16"), blocksize=128,
                       compress="DEFLATE", **image_geo)  # fmt: skip
    opts = dict(driver="GTiff") if mask_layout == "strip" else dict(blocksize=128)
    msk = write_raster(root / "msk.tif", labels, compress="DEFLATE", **opts, **mask_geo)
    return img, msk


@pytest.mark.parametrize(
    "mask_geo,cause",
    [
        (dict(crs="EPSG:32617"), "CRS EPSG:32618 (image) vs EPSG:32617 (mask)"),
        (dict(crs="EPSG:4326"), "EPSG:4326 (mask)"),
        (dict(transform=TRANSFORM * rasterio.Affine.translation(1000, 0)),
         "mask shifted by +1000 columns, +0 rows"),
        (dict(transform=TRANSFORM * rasterio.Affine.translation(0, -0.5)), "-0.5 rows"),
        (dict(transform=rasterio.Affine(20, 0, 500000, 0, -20, 4000000)), "transform"),
        (dict(transform=ROTATED), "transform"),
        (dict(crs=None), "CRS EPSG:32618 (image) vs none (mask)"),
        (dict(crs=None, transform=None), "vs none (mask)"),
        (dict(crs=CUSTOM), "vs GeoKeys"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("mask_layout", ["128", "strip"])
def test_a_mask_that_does_not_line_up_is_refused(tmp_path, labels, mask_geo, cause, mask_layout):
    img, msk = _pair(tmp_path, labels, {}, mask_geo, mask_layout)
    with pytest.raises(InputError) as err:
        make_stream([img], [msk], patch_size=64)
    assert err.value.what == str(msk)
    assert str(img) in err.value.cause and cause in err.value.cause


@pytest.mark.parametrize(
    "geo",
    [
        {},
        dict(crs=None, transform=None),  # neither georeferenced: nothing to compare
        dict(transform=ROTATED),  # stored as ModelTransformation, not tiepoint + scale
        dict(crs=CUSTOM),  # a CRS with no EPSG code: its GeoKeys compared
        dict(crs="EPSG:4326", transform=rasterio.Affine(1e-4, 0, -73.5, 0, -1e-4, 40.5)),
    ],
)
@pytest.mark.parametrize("mask_layout", ["128", "strip"])
def test_a_mask_that_lines_up_is_accepted(tmp_path, labels, geo, mask_layout):
    img, msk = _pair(tmp_path, labels, geo, geo, mask_layout)
    stream = make_stream([img], [msk], patch_size=64, length=4, batch_size=4)
    assert _assert_pairs_match(stream, img, msk) == 4


def test_float_round_off_in_the_transform_is_not_a_mismatch(tmp_path, labels):
    t = TRANSFORM
    nudged = rasterio.Affine(t.a * (1 + 1e-14), 0, t.c + 1e-7, 0, t.e, t.f - 1e-7)
    img, msk = _pair(tmp_path, labels, {}, dict(transform=nudged))
    make_stream([img], [msk], patch_size=64).close()
    img, msk = _pair(tmp_path, labels, {}, dict(transform=t * rasterio.Affine.translation(1e-3, 0)))
    with pytest.raises(InputError, match="shifted by"):  # a thousandth of a pixel is not
        make_stream([img], [msk], patch_size=64)
