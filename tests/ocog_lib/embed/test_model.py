"""The encoder: one unit vector per patch, any patch size, the input shape checked."""

import pytest
import torch

from ocog_lib.embed.model import EncoderSpec, build_encoder
from ocog_lib.errors import InputError


def test_unit_vectors_of_the_configured_dim():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    for dim, size in ((16, 32), (64, 64)):
        model = build_encoder(EncoderSpec(4, dim, 8)).eval()
        z = model(torch.randn(3, 4, size, size))
        assert z.shape == (3, dim) and z.dtype == torch.float32
        torch.testing.assert_close(z.norm(dim=1), torch.ones(3))
    rebuilt = build_encoder(model.spec.to_dict())
    assert rebuilt.spec == model.spec


def test_bad_specs_and_inputs():
    with pytest.raises(InputError, match="dim"):
        build_encoder(EncoderSpec(4, 1, 8))
    with pytest.raises(InputError, match=r"\(batch, 4"):
        build_encoder(EncoderSpec(4, 16, 8))(torch.zeros(2, 3, 32, 32))
