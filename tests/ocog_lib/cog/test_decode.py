"""Every decoded tile, and every patch built from them, equals rasterio's read bit for bit.

Float rasters carry NaN (per-band different, shared across bands, whole tiles, with and
without a nodata value): LERC stores NaN as validity masks, which the decoder must apply
the way libtiff does.
"""

from __future__ import annotations

import struct
import warnings

import imagecodecs
import numpy as np
import pytest
import rasterio
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rasterio.windows import Window

from ocog_lib.cog.decode import decode_tile, has_delta, undo_delta
from ocog_lib.cog.tiff_index import read_index
from ocog_lib.errors import InputError
from ocog_lib.stream.dataset import make_stream
from tests.support.rasters import real_pixels, write_raster

BLOCK = 32
# name: (creation options, float only)
CODECS = {
    "lerc": (dict(compress="LERC", max_z_error=0), False),
    "lerc-zstd": (dict(compress="LERC_ZSTD", max_z_error=0), False),
    "lerc-deflate": (dict(compress="LERC_DEFLATE", max_z_error=0), False),
    "deflate": (dict(compress="DEFLATE"), False),
    "deflate-p2": (dict(compress="DEFLATE", predictor=2), False),
    "deflate-p3": (dict(compress="DEFLATE", predictor=3), True),
    "zstd": (dict(compress="ZSTD"), False),
    "zstd-p2": (dict(compress="ZSTD", predictor=2), False),
    "zstd-p3": (dict(compress="ZSTD", predictor=3), True),
    "lzw": (dict(compress="LZW"), False),
    "lzw-p3": (dict(compress="LZW", predictor=3), True),
    "none": (dict(compress="NONE"), False),
}
NEG_NAN = np.copysign(np.nan, -1.0)  # another NaN bit pattern: raw codecs keep it, LERC not


def bits(a: np.ndarray) -> np.ndarray:
    return a.view(f"u{a.dtype.itemsize}")


def with_nans(arr: np.ndarray, rng: np.random.Generator, shared: bool, density: float):
    """NaN speckle and a block, different in every band unless `shared`; one all-NaN tile."""
    bands, h, w = arr.shape
    out = arr.copy()
    hole = rng.random((1 if shared else bands, h, w)) < density
    for b in range(hole.shape[0] if density else 0):
        y, x = rng.integers(0, h), rng.integers(0, w)
        hole[b, y : y + rng.integers(1, h), x : x + rng.integers(1, w)] = True
    out[np.broadcast_to(hole, out.shape)] = np.nan
    speckle = rng.random(hole.shape) < density / 10
    out[np.broadcast_to(speckle, out.shape)] = NEG_NAN
    out[:, :BLOCK, :BLOCK] = np.nan  # a tile with no valid pixel at all
    return out


def write(path, arr, codec: str, interleave: str, nodata) -> str:
    opts = dict(CODECS[codec][0], interleave=interleave)
    if nodata is not None:
        opts["nodata"] = nodata
    write_raster(path, arr, driver="GTiff", tiled=True, blockxsize=BLOCK, blockysize=BLOCK, **opts)
    return str(path)


def assert_tiles_match(path: str) -> int:
    """Decode every stored tile both ways (band-first; stored layout, predictor 2 left for
    `undo_delta`) and compare each with rasterio's windowed read of the tile."""
    idx = read_index(path)
    lv = idx.levels[0]
    data = open(path, "rb").read()
    planes = idx.bands if idx.planar == 2 else 1
    n = 0
    with rasterio.open(path) as ds:
        for ty in range(lv.tiles_down):
            for tx in range(lv.tiles_across):
                win = Window(tx * BLOCK, ty * BLOCK, BLOCK, BLOCK)
                ref = ds.read(window=win)
                h, w = ref.shape[1:]
                for pl in range(planes):
                    off, size = idx.tile_entry(0, pl, ty, tx)
                    raw = data[off : off + size]
                    want = ref[pl : pl + 1] if planes > 1 else ref
                    first = decode_tile(idx, raw)[:, :h, :w]
                    stored = decode_tile(idx, raw, band_first=False, undo_predictor=False)
                    if has_delta(idx):
                        stored = undo_delta(stored, slice(0, h), slice(0, w))
                    stored = stored[:h, :w].transpose(2, 0, 1)
                    for got in (first, stored):
                        assert got.dtype == want.dtype
                        np.testing.assert_array_equal(
                            bits(got), bits(want), err_msg=f"{path} tile {ty},{tx} plane {pl}"
                        )
                    n += 1
    return n


LERC = ["lerc", "lerc-zstd", "lerc-deflate"]
OTHERS = [c for c in CODECS if c not in LERC]


@st.composite
def rasters(draw, floating: bool, codecs: list[str]):
    dtype = draw(st.sampled_from(["float32", "float64"] if floating else ["uint8", "uint16"]))
    codec = draw(st.sampled_from([c for c in codecs if floating or not CODECS[c][1]]))
    bands = draw(st.integers(1, 13))
    h, w = draw(st.integers(BLOCK + 1, 3 * BLOCK)), draw(st.integers(BLOCK + 1, 3 * BLOCK))
    seed = draw(st.integers(0, 2**16))
    arr = real_pixels(bands, h, w, "float32" if floating else dtype, seed=seed).astype(dtype)
    rng = np.random.default_rng(seed)
    if floating:
        density = draw(st.sampled_from([0.0, 0.01, 0.3]))
        arr = with_nans(arr, rng, draw(st.booleans()), density)
        nodata = draw(st.sampled_from([None, -9999.0, float("nan")]))
        if nodata == -9999.0:
            arr[rng.random(arr.shape) < 0.05] = nodata
    else:
        nodata = draw(st.sampled_from([None, 0]))
        arr[:, : h // 3] = 0
    return arr, codec, draw(st.sampled_from(["pixel", "band"])), nodata


SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
FEWER = settings(SETTINGS, max_examples=15)


@SETTINGS
@given(case=rasters(floating=True, codecs=LERC))
def test_lerc_float_tiles_with_nan_match_rasterio(tmp_path, case):
    arr, codec, interleave, nodata = case
    assert assert_tiles_match(write(tmp_path / "f.tif", arr, codec, interleave, nodata)) > 0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bands,shared", [(1, True), (3, True), (3, False), (13, False)])
def test_lerc_nan_layouts_match_rasterio(tmp_path, dtype, bands, shared):
    """Each layout libtiff picks: one mask (shared NaNs, one band), or one blob and mask
    per band (NaNs differ), next to all-NaN and all-valid tiles."""
    arr = real_pixels(bands, 3 * BLOCK, 2 * BLOCK + 5, "float32").astype(dtype)
    arr = with_nans(arr, np.random.default_rng(bands), shared, 0.05)
    arr[:, -BLOCK:] = 1.5  # a last tile row without NaN
    path = write(tmp_path / "l.tif", arr, "lerc-zstd", "pixel", None)
    assert assert_tiles_match(path) == 9


@FEWER
@given(case=rasters(floating=True, codecs=OTHERS))
def test_float_tiles_with_nan_match_rasterio(tmp_path, case):
    arr, codec, interleave, nodata = case
    assert assert_tiles_match(write(tmp_path / "f.tif", arr, codec, interleave, nodata)) > 0


@FEWER
@given(case=rasters(floating=False, codecs=list(CODECS)))
def test_integer_tiles_match_rasterio(tmp_path, case):
    arr, codec, interleave, nodata = case
    assert assert_tiles_match(write(tmp_path / "i.tif", arr, codec, interleave, nodata)) > 0


@SETTINGS
@given(
    case=rasters(floating=True, codecs=list(CODECS)),
    sampler=st.sampled_from(["random", "block", "grid"]),
    patch=st.integers(1, 70),
    reuse=st.sampled_from([1, 3]),  # 1: stored-layout tiles, 3: band-first tiles
    data=st.data(),
)
def test_float_patches_with_nan_match_rasterio(tmp_path, case, sampler, patch, reuse, data):
    arr, codec, interleave, nodata = case
    path = write(tmp_path / "p.tif", arr, codec, interleave, nodata)
    bands = arr.shape[0]
    subset = data.draw(st.lists(st.integers(0, bands - 1), min_size=1, max_size=bands, unique=True))
    patch = min(patch, *arr.shape[1:])
    stream = make_stream(
        [path], sampler=sampler, patch_size=patch, batch_size=4, length=8,
        patches_per_tile=reuse, bands=tuple(subset), threads=2,
    )  # fmt: skip
    seen = 0
    with rasterio.open(path) as ds:
        for batch in stream:
            for b, (_, row, col) in enumerate(batch["window"].tolist()):
                ref = ds.read([i + 1 for i in subset], window=Window(col, row, patch, patch))
                np.testing.assert_array_equal(bits(batch["image"][b].numpy()), bits(ref))
                seen += 1
    stream.close()
    assert seen == len(stream.windows) > 0


@pytest.mark.parametrize("codec", ["lerc", "lerc-zstd"])
@pytest.mark.parametrize("bands", [2, 4])
def test_lerc_alpha_band_comes_back_from_the_mask(tmp_path, codec, bands):
    """GDAL stores a 0/255 uint8 alpha band as LERC's validity mask, not as pixels."""
    arr = real_pixels(bands, 80, 70, "uint8", seed=bands)
    arr[-1] = np.where(np.random.default_rng(1).random((80, 70)) < 0.4, 0, 255)
    arr[-1, :BLOCK, :BLOCK] = 255  # a tile with every pixel valid
    opts = dict(CODECS[codec][0], alpha="YES")
    if bands == 4:
        opts["photometric"] = "RGB"
    path = write_raster(
        tmp_path / "a.tif", arr, driver="GTiff", tiled=True, blockxsize=BLOCK,
        blockysize=BLOCK, **opts,
    )  # fmt: skip
    assert assert_tiles_match(str(path)) == 9


def lerc_tiff_with_mask(path, pixels: np.ndarray, mask: np.ndarray | None) -> str:
    """A one-tile uint16 LERC TIFF whose blob carries `mask` (GDAL never writes one)."""
    tifffile.imwrite(path, pixels, tile=pixels.shape[:2], compression="lerc",
                     photometric="minisblack", planarconfig="contig")  # fmt: skip
    blob = imagecodecs.lerc_encode(pixels, masks=mask)
    with tifffile.TiffFile(path) as tf:
        page = tf.pages[0]
        at_offset, at_count = page.tags[324].valueoffset, page.tags[325].valueoffset
    data = bytearray(open(path, "rb").read())
    struct.pack_into("<I", data, at_offset, len(data))
    struct.pack_into("<I", data, at_count, len(blob))
    open(path, "wb").write(bytes(data) + blob)
    return str(path)


@pytest.mark.parametrize("samples", [1, 3])
def test_lerc_mask_on_integers_is_an_error_as_in_gdal(tmp_path, samples):
    pixels = real_pixels(samples, 64, 64, "uint16").transpose(1, 2, 0).squeeze()
    mask = np.ones((64, 64), bool)
    mask[:10] = False
    masked = lerc_tiff_with_mask(tmp_path / "m.tif", pixels, mask)
    plain = lerc_tiff_with_mask(tmp_path / "ok.tif", pixels, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(masked) as ds, pytest.raises(rasterio.errors.RasterioIOError):
            ds.read()
        with rasterio.open(plain) as ds:
            ref = ds.read()
    with pytest.raises(InputError, match="m.tif.*mask"):
        decode_tile(read_index(masked), only_tile(masked))
    # the same tile without a mask reads, and matches GDAL
    np.testing.assert_array_equal(decode_tile(read_index(plain), only_tile(plain)), ref)


def only_tile(path: str) -> bytes:
    off, size = read_index(path).tile_entry(0, 0, 0, 0)
    return open(path, "rb").read()[off : off + size]
