"""Hash codes from quantised latents: the search path decodes no pixel and reads no raster;
the losses are what the module says, their weights learned (Kendall et al.)."""

import numpy as np
import pytest
import torch

import ocog_lib.stream.dataset
import ocog_lib.stream.rasters
from ocog_lib.compress import bitstream
from ocog_lib.compress.bitstream import encode
from ocog_lib.compress.codec import Codec, CodecSpec
from ocog_lib.compress.hamming import hamming_search
from ocog_lib.compress.hashing import (
    HashHead,
    HashSpec,
    codes_from_bitstreams,
    codes_from_patches,
    hash_loss,
)
from ocog_lib.embed.vectors import NO_LABEL
from ocog_lib.errors import InputError

SHAPE = (4, 32, 32)


def _never(*_, **__):
    raise AssertionError("pixels were decoded or a raster was opened")


@pytest.fixture
def models():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    return Codec(CodecSpec(4, 16, 8)).eval(), HashHead(HashSpec(8, 32, 16, 4)).eval()


def test_search_from_bitstreams_never_decodes_pixels(models, monkeypatch):
    codec, head = models
    patches = torch.randn(20, *SHAPE, generator=torch.Generator().manual_seed(1))
    streams = encode(codec, patches)
    expected = codes_from_patches(codec, head, patches)
    monkeypatch.setattr(codec.synthesis, "forward", _never)  # weights (and id) unchanged
    monkeypatch.setattr(bitstream, "decode", _never)
    monkeypatch.setattr(ocog_lib.stream.rasters, "open_raster", _never)
    monkeypatch.setattr(ocog_lib.stream.dataset.CogStream, "__init__", _never)
    codes = codes_from_bitstreams(codec, head, streams, SHAPE)
    assert codes.dtype == np.uint8 and codes.shape == (20, 4)
    assert np.array_equal(codes, expected)
    hits = hamming_search(codes[:3], codes, 5)
    first_equal = [int(np.flatnonzero((codes == codes[i]).all(1))[0]) for i in range(3)]
    assert hits.indices[:, 0].tolist() == first_equal and (hits.distances[:, 0] == 0).all()


def test_losses_are_as_defined():
    head = HashHead(HashSpec(8, 16, 8, 4))
    u = torch.tensor([[1.0] * 16, [1.0] * 16, [-1.0] * 16, [1.0] * 8 + [-1.0] * 8])
    logits = torch.zeros(4, 4)
    loss = hash_loss(head, u, logits, torch.tensor([0, 0, 1, NO_LABEL]))
    sim, balance, cls = loss.terms.tolist()
    # labelled pairs: (0, 1) same with cos 1 (error 0); (0, 2), (1, 2) different, cos -1
    assert sim == pytest.approx((0 + 1 + 1 + 0 + 1 + 1) / 6)
    assert balance == pytest.approx(((2 / 4) ** 2 * 8 + 0 * 8) / 16)
    assert cls == pytest.approx(np.log(4))
    assert loss.total.item() == pytest.approx(sum(loss.terms.tolist()))  # s = 0: weights 1
    none = hash_loss(head, u, logits, torch.full((4,), NO_LABEL))
    assert none.terms[0] == 0 and none.terms[2] == 0 and torch.isfinite(none.total)


def test_loss_weights_learn_each_terms_scale():
    """With the terms fixed, the learned weights go to 1 / term: no weight is searched."""
    head = HashHead(HashSpec(8, 16, 8, 4))
    opt = torch.optim.Adam([head.log_vars], lr=0.05)
    u = torch.tensor([[0.5] * 16, [0.2] * 16, [-0.4] * 16])
    logits = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 0])
    for _ in range(600):
        loss = hash_loss(head, u, logits, labels)
        opt.zero_grad()
        loss.total.backward()
        opt.step()
    np.testing.assert_allclose(loss.weights.numpy(), 1 / loss.terms.numpy(), rtol=0.02)


def test_head_refuses_other_latents():
    head = HashHead(HashSpec(8, 16, 8, 4))
    with pytest.raises(InputError, match="latents"):
        head(torch.zeros(1, 7, 4, 4))
    with pytest.raises(InputError, match="multiple of 8"):
        HashHead(HashSpec(8, 12, 8, 4))
