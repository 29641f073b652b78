"""A compact U-Net: enough capacity for 4-class land cover, small enough for a CPU test.

segmentation-models-pytorch offers stronger encoders; it is an optional extra, not a
dependency, so the training loop only needs this module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ocog_lib.errors import InputError


@dataclass(frozen=True)
class UNetSpec:
    """Everything needed to rebuild the network from a saved state dict."""

    in_channels: int
    num_classes: int
    width: int = 16  # channels of the first block; doubled at each level down
    depth: int = 3  # poolings; patch sizes must be multiples of 2**depth

    def to_dict(self) -> dict:
        return asdict(self)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """Encoder of `depth` pooled conv blocks, a mirrored decoder with skip connections."""

    def __init__(self, spec: UNetSpec):
        super().__init__()
        if spec.in_channels < 1 or spec.num_classes < 2 or spec.width < 1 or spec.depth < 1:
            raise InputError(f"U-Net {spec}", "need in_channels>=1, num_classes>=2, width>=1, "
                             "depth>=1")
        self.spec = spec
        widths = [spec.width * 2**i for i in range(spec.depth + 1)]
        self.down = nn.ModuleList()
        cin = spec.in_channels
        for w in widths[:-1]:
            self.down.append(_block(cin, w))
            cin = w
        self.bottom = _block(widths[-2], widths[-1])
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for w_hi, w in zip(reversed(widths[1:]), reversed(widths[:-1]), strict=True):
            self.up.append(nn.ConvTranspose2d(w_hi, w, 2, stride=2))
            self.merge.append(_block(2 * w, w))
        self.head = nn.Conv2d(widths[0], spec.num_classes, 1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = 2**self.spec.depth
        if x.shape[-1] % m or x.shape[-2] % m:
            raise InputError(f"input {tuple(x.shape)}", f"height and width must be multiples "
                             f"of {m} (2**depth)")
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips), strict=True):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.head(x)


def build_unet(spec: UNetSpec | dict) -> UNet:
    return UNet(spec if isinstance(spec, UNetSpec) else UNetSpec(**spec))
