"""The codec: analysis and synthesis transforms around a quantised latent (Balle et al. 2017).

- analysis: three 5x5 stride-2 convolutions, GDN between them (the divisive
  normalisation that Gaussianises natural image statistics better than a ReLU does at
  this size), to `latents` channels at 1/8 of the patch's resolution;
- quantisation: uniform noise in [-1/2, 1/2) while training (a differentiable proxy
  whose density is the rounded value's probability), rounding at inference, clamped to
  +-LATENT_LIMIT (so an escaped value fits the 16 raw bits the bitstream gives it);
- synthesis: the mirror, transposed convolutions with inverse GDN, to the bands;
- `density`: the factorised entropy model of the latents (`entropy.FactorizedDensity`).

Patches are per-band normalised (`embed.train.normalised`), so MSE weighs bands alike.
The codec's id (`codec_id`) is a hash of its weights: a bitstream names the exact codec
that can decode it, whatever run or file the codec came from.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ocog_lib.compress.entropy import CodingTables, FactorizedDensity, build_tables
from ocog_lib.errors import InputError

LEVELS = 3  # stride-2 stages: latents at 1/8 of the patch
LATENT_LIMIT = 32_767


@dataclass(frozen=True)
class CodecSpec:
    """Everything needed to rebuild the network from a saved state dict."""

    in_channels: int
    channels: int = 48
    latents: int = 32

    def to_dict(self) -> dict:
        return asdict(self)


class GDN(nn.Module):
    """y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2) (Balle 2016); `inverse` multiplies.
    beta and gamma are kept positive by squaring their stored square roots."""

    def __init__(self, channels: int, inverse: bool = False):
        super().__init__()
        self.inverse = inverse
        self.beta_root = nn.Parameter(torch.ones(channels))
        self.gamma_root = nn.Parameter(torch.sqrt(0.1 * torch.eye(channels) + 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = self.beta_root**2 + 1e-6
        gamma = (self.gamma_root**2)[:, :, None, None]
        norm = torch.sqrt(F.conv2d(x * x, gamma.to(x.dtype), beta.to(x.dtype)))
        return x * norm if self.inverse else x / norm


def _down(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 5, stride=2, padding=2)


def _up(cin: int, cout: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1)


class Codec(nn.Module):
    """(B, C, H, W) normalised patches (H, W multiples of 8) <-> (B, M, H/8, W/8) latents."""

    def __init__(self, spec: CodecSpec):
        super().__init__()
        if min(spec.in_channels, spec.channels, spec.latents) < 1:
            raise InputError(f"codec {spec}", "need in_channels, channels, latents >= 1")
        self.spec = spec
        c, n, m = spec.in_channels, spec.channels, spec.latents
        self.analysis = nn.Sequential(_down(c, n), GDN(n), _down(n, n), GDN(n), _down(n, m))
        self.synthesis = nn.Sequential(_up(m, n), GDN(n, inverse=True), _up(n, n),
                                       GDN(n, inverse=True), _up(n, c))  # fmt: skip
        self.density = FactorizedDensity(m)
        self.tables: CodingTables | None = None

    def latent_shape(self, shape: tuple[int, ...]) -> tuple[int, int, int]:
        """(M, h, w) latents of a (C, H, W) patch; H and W must be multiples of 8."""
        c, h, w = (int(v) for v in shape[-3:])
        step = 2**LEVELS
        if c != self.spec.in_channels or h % step or w % step or h < step or w < step:
            raise InputError(f"patch shape {(c, h, w)}",
                             f"need {self.spec.in_channels} bands and height and width "
                             f"multiples of {step}")  # fmt: skip
        return self.spec.latents, h // step, w // step

    def encode_latents(self, x: torch.Tensor) -> torch.Tensor:
        """The rounded latents of normalised patches (float32 holding integers)."""
        self.latent_shape(tuple(x.shape))
        return quantise(self.analysis(x).float())

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Training: (decoded patches, latents plus uniform noise) of normalised patches;
        `noise` in [-1/2, 1/2) of the latents' shape (drawn here when not given)."""
        self.latent_shape(tuple(x.shape))
        y = self.analysis(x)
        if noise is None:
            noise = torch.empty_like(y).uniform_(-0.5, 0.5)
        y_tilde = y + noise.to(y.device, y.dtype)
        return self.synthesis(y_tilde), y_tilde

    def codec_id(self) -> str:
        """16 hex digits of sha256 over the weights, in state-dict order."""
        h = hashlib.sha256()
        for name, t in self.state_dict().items():
            h.update(name.encode())
            h.update(t.detach().cpu().float().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def coding_tables(self) -> CodingTables:
        """The range coder's tables for these weights: those kept (also from a model file)
        while the weights are unchanged, else computed once and kept."""
        key = self.codec_id()
        if self.tables is None or self.tables.key != key:
            self.tables = build_tables(self.density, key)
        return self.tables


def quantise(y: torch.Tensor) -> torch.Tensor:
    """Inference quantisation: round half to even, clamped to +-LATENT_LIMIT."""
    return torch.round(y).clamp(-LATENT_LIMIT, LATENT_LIMIT)


def build_codec(spec: CodecSpec | dict) -> Codec:
    return Codec(spec if isinstance(spec, CodecSpec) else CodecSpec(**spec))
