"""Classical baselines on the learned codec's patches: lossless TIFF tiles that read back
bit-exactly, JPEG 2000 / WEBP at a target rate that is never exceeded, RD curves, a PNG."""

import io
import math

import numpy as np
import pytest
from rasterio.io import MemoryFile

from ocog_lib.compress import baselines
from ocog_lib.compress.baselines import (
    LossyPoint,
    j2k_header_bytes,
    lossless_bytes,
    lossless_tiff,
    lossy_at_bpp,
    lossy_curve,
    rd_png,
)
from ocog_lib.errors import InputError

N, C, P, PEAK = 16, 4, 32, 10000.0
pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


def patches(seed: int = 0) -> np.ndarray:
    """Smooth fields (a few sine waves, shared by the bands with band gains and offsets,
    as reflectances are) plus sensor noise, uint16 DN in 0..10000."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:P, 0:P] / P
    out = np.empty((N, C, P, P))
    for i in range(N):
        field = np.zeros((P, P))
        for _ in range(4):
            fx, fy, phase = *rng.uniform(0.3, 3, 2), rng.uniform(0, 6.3)
            field += rng.uniform(0.2, 1) * np.sin(2 * np.pi * (fx * xx + fy * yy) + phase)
        for b in range(C):
            out[i, b] = 3000 + 1500 * b + 1200 * (1 + 0.2 * b) * field + rng.normal(0, 60, (P, P))
    return np.clip(out, 0, 10000).round().astype(np.uint16)


@pytest.fixture(scope="module")
def raw():
    return patches()


def read_tiles(data: bytes) -> np.ndarray:
    with MemoryFile(data) as mf, mf.open() as ds:
        assert (ds.block_shapes[0], ds.profile["interleave"]) == ((P, P), "pixel")
        return ds.read().reshape(C, P, N, P).transpose(2, 0, 1, 3)


@pytest.mark.parametrize("compress", ["ZSTD", "LERC_ZSTD", "DEFLATE"])
def test_lossless_tiles_read_back_bit_exact_and_count_payloads(raw, compress):
    data = lossless_tiff(raw, compress)
    assert np.array_equal(read_tiles(data), raw)
    size = lossless_bytes(raw, compress)
    assert 0 < size < len(data)  # the header and IFD are not counted
    assert size < raw.nbytes  # smooth fields compress even with noise


def test_predictor_is_optional_and_checked(raw):
    assert np.array_equal(read_tiles(lossless_tiff(raw, "zstd", predictor=2)), raw)
    assert lossless_bytes(raw, "ZSTD", predictor=2) < lossless_bytes(raw, "ZSTD")
    with pytest.raises(InputError, match="predictor"):
        lossless_bytes(raw, "LERC_ZSTD", predictor=2)


@pytest.mark.parametrize(
    "args, match",
    [
        ((np.zeros((2, 4, 32, 32), np.uint16), "JPEG"), "compression 'JPEG'"),
        ((np.zeros((4, 32, 32), np.uint16), "ZSTD"), "shape"),
        ((np.zeros((2, 4, 32, 16), np.uint16), "ZSTD"), "shape"),
        ((np.zeros((2, 4, 24, 24), np.uint16), "ZSTD"), "multiple of 16"),
        ((np.zeros((2, 4, 32, 32), np.complex64), "ZSTD"), "dtype"),
    ],
)
def test_lossless_refuses_bad_input_by_name(args, match):
    with pytest.raises(InputError, match=match):
        lossless_bytes(*args)


def test_lossy_refuses_bad_input_by_name(raw):
    with pytest.raises(InputError, match="codec 'jpeg'"):
        lossy_at_bpp(raw, 2.0, PEAK, codec="jpeg")
    with pytest.raises(InputError, match="peak"):
        lossy_curve(raw, 0.0)
    with pytest.raises(InputError, match="shape"):
        lossy_curve(raw[0], PEAK)
    with pytest.raises(InputError, match="target"):
        lossy_at_bpp(raw, 0.0, PEAK)


def test_lossy_at_bpp_respects_the_target_and_psnr_grows_with_it(raw):
    low, high = lossy_at_bpp(raw, 2.0, PEAK), lossy_at_bpp(raw, 4.0, PEAK)
    assert isinstance(low, LossyPoint) and low.codec == "jpeg2000"
    assert 1.8 < low.bpp <= 2.0 and 3.6 < high.bpp <= 4.0  # the highest rate under it
    assert 25 < low.psnr_db < high.psnr_db < 60
    assert 0 < low.ssim < high.ssim <= 1


def test_per_patch_headers_set_a_floor_the_mosaic_goes_under(raw):
    coded = baselines._job(raw, "jpeg2000", PEAK, True).coded
    one = baselines._enc_jp2(coded[:1], 4)[0]
    mosaic = baselines._enc_mosaic(coded, 4)[0]
    # per patch: a whole main header; in the mosaic: one, plus SOT + SOD per tile
    assert j2k_header_bytes(mosaic) - j2k_header_bytes(one) == (N - 1) * 14
    assert 8 * j2k_header_bytes(one) / (P * P) > 0.5  # bpp before any coded data
    with pytest.raises(InputError, match="jpeg2000-mosaic"):
        lossy_at_bpp(raw, 0.5, PEAK)
    point = lossy_at_bpp(raw, 1.0, PEAK, codec="jpeg2000-mosaic")
    assert point.codec == "jpeg2000-mosaic" and 0.9 < point.bpp <= 1.0
    assert point.psnr_db > 25


def test_stretch_is_exact_on_integers_and_beats_direct_coding(raw):
    scale = baselines._scaling(raw, "jpeg2000", True)
    assert np.array_equal(scale.inverse(scale.forward(raw, "uint16"), raw), raw)
    assert scale.side_bytes == 2 * 2 * C  # two uint16 per band, once for the set
    direct = lossy_at_bpp(raw, 1.0, PEAK, codec="jpeg2000-mosaic", stretch=False)
    assert direct.codec == "jpeg2000-mosaic direct" and direct.bpp <= 1.0
    assert lossy_at_bpp(raw, 1.0, PEAK, codec="jpeg2000-mosaic").psnr_db > direct.psnr_db


def test_float_patches_are_mapped_and_the_map_is_paid_for(raw):
    refl = raw.astype(np.float32) / 10000
    point = lossy_at_bpp(refl, 2.0, 1.0, codec="jpeg2000-mosaic")
    assert point.bpp <= 2.0 and 25 < point.psnr_db < math.inf
    assert baselines._scaling(refl, "jpeg2000", False).side_bytes == 2 * 8 * C


def test_curves_are_sorted_by_rate(raw):
    curve = lossy_curve(raw, PEAK, codec="jpeg2000-mosaic", qualities=(8, 2, 4))
    assert [p.quality for p in curve] == [2, 4, 8]
    assert np.all(np.diff([p.bpp for p in curve]) > 0)
    assert np.all(np.diff([p.psnr_db for p in curve]) > 0)
    webp = lossy_curve(raw, PEAK, codec="webp", qualities=(80, 20))
    assert [p.codec for p in webp] == ["webp", "webp"] and webp[0].bpp < webp[1].bpp
    assert webp[0].psnr_db < webp[1].psnr_db


def test_rd_png_is_a_png_of_the_figure():
    from matplotlib.image import imread

    curve = [LossyPoint("jpeg2000", q, b, d, 0.9) for q, b, d in ((2, 0.7, 27), (4, 2.0, 37))]
    png = rd_png([("learned", 0.5, 31.0), ("lossless", 52.0, math.inf)],
                 {"jpeg2000": curve}, "test")  # fmt: skip
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    img = imread(io.BytesIO(png))
    assert img.ndim == 3 and 300 < img.shape[0] < 700 and 500 < img.shape[1] < 1000
