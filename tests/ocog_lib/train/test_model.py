import pytest
import torch

from ocog_lib.errors import InputError
from ocog_lib.train.model import UNetSpec, build_unet


def test_unet_maps_every_pixel_to_class_scores():
    model = build_unet(UNetSpec(in_channels=4, num_classes=5, width=4, depth=2))
    out = model(torch.randn(2, 4, 32, 48))
    assert out.shape == (2, 5, 32, 48)


def test_unet_rejects_sizes_it_cannot_pool():
    model = build_unet({"in_channels": 4, "num_classes": 3, "width": 4, "depth": 3})
    with pytest.raises(InputError, match="multiples of 8"):
        model(torch.randn(1, 4, 36, 32))
    with pytest.raises(InputError, match="num_classes"):
        build_unet(UNetSpec(in_channels=4, num_classes=1))
