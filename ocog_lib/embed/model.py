"""The patch encoder: a small residual CNN, a patch in, one unit-length vector out.

Two branches over the normalised bands, both averaged over the patch (a summary of what
the patch holds, not where in it):
- per pixel, two 1x1 convolutions (4 x width hidden: cheap at 1x1, and on the sample the
  wider transform was what told bare soil from water): a learned spectral transform
  (band ratios such as NDVI/NDWI are non-linear in the bands; averaging such features
  after the non-linearity gives the patch's mix of surfaces, which averaging the bands
  cannot unmix);
- texture, two residual blocks of 3x3 convolutions over those features at 1/2 and 1/4
  resolution (VectorGeo uses a small ResNet).
The pooled features go through one linear layer to `dim`: the embedding. Training
compares the embedding after a further projection head (SimCLR's finding, held on the
sample: the layer before the head keeps more of what tells surfaces apart, the head
absorbs what only serves the pretext task). Trained from scratch: no downloaded weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ocog_lib.errors import InputError


@dataclass(frozen=True)
class EncoderSpec:
    """Everything needed to rebuild the network from a saved state dict."""

    in_channels: int
    dim: int = 16
    width: int = 32

    def to_dict(self) -> dict:
        return asdict(self)


class _Block(nn.Module):
    """Two 3x3 convolutions with a shortcut (1x1 when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Identity()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                       nn.BatchNorm2d(cout))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(y)) + self.short(x), inplace=True)


class Encoder(nn.Module):
    """(B, C, H, W) normalised patches -> (B, dim) L2-normalised float32 vectors."""

    def __init__(self, spec: EncoderSpec):
        super().__init__()
        if spec.in_channels < 1 or spec.dim < 2 or spec.width < 1:
            raise InputError(f"encoder {spec}", "need in_channels >= 1, dim >= 2, width >= 1")
        self.spec = spec
        w = spec.width
        h = 4 * w
        self.pixel = nn.Sequential(
            nn.Conv2d(spec.in_channels, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU(inplace=True),
            nn.Conv2d(h, w, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
        )
        self.context = nn.Sequential(_Block(w, 2 * w, 2), _Block(2 * w, 2 * w, 2))
        self.embed = nn.Linear(3 * w, spec.dim)
        self.project = nn.Sequential(nn.Linear(spec.dim, 4 * w), nn.ReLU(inplace=True),
                                     nn.Linear(4 * w, spec.dim))  # fmt: skip

    def _embedding(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.spec.in_channels:
            raise InputError(f"input {tuple(x.shape)}",
                             f"expected (batch, {self.spec.in_channels}, height, width)")
        px = self.pixel(x)
        pooled = [px.mean(dim=(2, 3)), self.context(px).mean(dim=(2, 3))]
        return self.embed(torch.cat(pooled, dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding: unit vectors of `dim`."""
        return F.normalize(self._embedding(x).float(), dim=1)

    def training_vectors(self, x: torch.Tensor) -> torch.Tensor:
        """What the loss compares: the embedding through the projection head, unit length."""
        return F.normalize(self.project(self._embedding(x)).float(), dim=1)


def build_encoder(spec: EncoderSpec | dict) -> Encoder:
    return Encoder(spec if isinstance(spec, EncoderSpec) else EncoderSpec(**spec))
