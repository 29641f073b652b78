"""Rate and distortion as reported: bits from actual bytes, PSNR and SSIM on the DN scale.

- `bits_per_pixel`: 8 x total bytes / spatial pixels (all bands of a pixel together),
  from the bytes a coder really wrote, never from an entropy estimate.
- `psnr`: 10 log10(peak^2 / MSE) over every band and pixel, on the DN (digital number)
  scale of the uint16 rasters, the decoded values rounded and clipped to uint16 as a
  decoded product would be. `peak` is given by the caller (the reports use the
  reference set's data range, max - min, as scikit-image's `data_range`).
- `ssim`: Wang et al. 2004 with scikit-image's Gaussian settings (11 x 11 window,
  sigma 1.5, K1 0.01, K2 0.03, valid region only), per band, averaged over bands and
  patches; the same `peak` is its L.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ocog_lib.errors import InputError

WINDOW, SIGMA, K1, K2 = 11, 1.5, 0.01, 0.03


def bits_per_pixel(streams: Sequence[bytes], pixels: int) -> float:
    """8 x bytes of all streams / `pixels` (height x width, summed over patches)."""
    if pixels < 1:
        raise InputError(f"pixels {pixels}", "must be at least 1")
    return 8.0 * sum(len(s) for s in streams) / pixels


def to_dn(normalised: torch.Tensor, norm: dict) -> np.ndarray:
    """Normalised patches back to the uint16 DN scale, rounded and clipped."""
    mean = norm["mean"].cpu()[None, :, None, None].double()
    std = norm["std"].cpu()[None, :, None, None].double()
    x = normalised.detach().cpu().double() * std + mean
    return x.round().clamp(0, 65535).numpy().astype(np.uint16)


def _check(ref: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref, test = np.asarray(ref, np.float64), np.asarray(test, np.float64)
    if ref.shape != test.shape or ref.ndim != 4:
        raise InputError(f"images {ref.shape} and {test.shape}", "need equal (n, C, H, W)")
    return ref, test


def psnr(ref: np.ndarray, test: np.ndarray, peak: float) -> float:
    """dB over all values; inf when identical."""
    ref, test = _check(ref, test)
    mse = float(np.mean((ref - test) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


def _gaussian() -> torch.Tensor:
    t = torch.arange(WINDOW, dtype=torch.float64) - (WINDOW - 1) / 2
    g = torch.exp(-(t**2) / (2 * SIGMA**2))
    return g / g.sum()


def ssim(ref: np.ndarray, test: np.ndarray, peak: float) -> float:
    """Mean SSIM over patches and bands (valid region of the Gaussian window)."""
    ref, test = _check(ref, test)
    if min(ref.shape[2:]) < WINDOW:
        raise InputError(f"patches {ref.shape[2:]}", f"SSIM needs at least {WINDOW} px")
    n, c = ref.shape[:2]
    x = torch.from_numpy(ref).reshape(n * c, 1, *ref.shape[2:])
    y = torch.from_numpy(test).reshape(n * c, 1, *ref.shape[2:])
    g = _gaussian()
    gh, gw = g.view(1, 1, 1, -1), g.view(1, 1, -1, 1)

    def blur(v: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(v, gh), gw)

    # unbiased (co)variances, as scikit-image's default
    cov = WINDOW * WINDOW / (WINDOW * WINDOW - 1)
    mx, my = blur(x), blur(y)
    vx, vy = cov * (blur(x * x) - mx * mx), cov * (blur(y * y) - my * my)
    vxy = cov * (blur(x * y) - mx * my)
    c1, c2 = (K1 * peak) ** 2, (K2 * peak) ** 2
    s = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean())
