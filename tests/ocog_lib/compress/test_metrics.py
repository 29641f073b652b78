"""Rate from bytes, PSNR and SSIM on the DN scale: the definitions the module states."""

import math

import numpy as np
import pytest
import torch

from ocog_lib.compress.metrics import WINDOW, bits_per_pixel, psnr, ssim, to_dn
from ocog_lib.errors import InputError


def test_bits_per_pixel_counts_bytes():
    assert bits_per_pixel([b"abc", b"de"], 10) == 4.0
    with pytest.raises(InputError, match="pixels"):
        bits_per_pixel([b"a"], 0)


def test_psnr_by_definition():
    ref = np.full((1, 2, 4, 4), 100, dtype=np.uint16)
    test = ref.copy()
    assert psnr(ref, test, 1000.0) == math.inf
    test[0, 0, 0, 0] = 110  # MSE = 100 / 32
    assert psnr(ref, test, 1000.0) == pytest.approx(10 * math.log10(1000**2 / (100 / 32)))
    with pytest.raises(InputError, match="equal"):
        psnr(ref, test[:, :1], 1000.0)


def _ssim_at_centre(x: np.ndarray, y: np.ndarray, peak: float) -> float:
    """SSIM of the single full window of WINDOW x WINDOW images, written out."""
    t = np.arange(WINDOW) - (WINDOW - 1) / 2
    g = np.exp(-(t**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    cov = WINDOW * WINDOW / (WINDOW * WINDOW - 1)
    mx, my = (w * x).sum(), (w * y).sum()
    vx, vy = cov * ((w * x * x).sum() - mx**2), cov * ((w * y * y).sum() - my**2)
    vxy = cov * ((w * x * y).sum() - mx * my)
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    return ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))


def test_ssim_matches_the_formula_and_orders_damage():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4000, (1, 1, WINDOW, WINDOW)).astype(np.float64)
    y = x + rng.normal(0, 300, x.shape)
    assert ssim(x, y, 4000.0) == pytest.approx(_ssim_at_centre(x[0, 0], y[0, 0], 4000.0))
    big = rng.integers(0, 4000, (2, 3, 32, 32)).astype(np.float64)
    assert ssim(big, big, 4000.0) == pytest.approx(1.0)
    mild, strong = big + rng.normal(0, 50, big.shape), big + rng.normal(0, 500, big.shape)
    assert 1.0 > ssim(big, mild, 4000.0) > ssim(big, strong, 4000.0)
    with pytest.raises(InputError, match="SSIM needs"):
        ssim(big[..., :8, :8], big[..., :8, :8], 4000.0)


def test_to_dn_undoes_normalisation_and_clips():
    norm = {"mean": torch.tensor([1000.0, 2000.0]), "std": torch.tensor([10.0, 20.0])}
    x = torch.tensor([[[[0.0, 1.0]], [[-200.0, 1e6]]]])  # (1, 2, 1, 2)
    assert to_dn(x, norm).tolist() == [[[[1000, 1010]], [[0, 65535]]]]
