"""CompressConfig: defaults in one place, every bad value named, a model id per config + data."""

import dataclasses

import pytest

from ocog_lib.compress.config import FIELD_HELP, CompressConfig, defaults, model_id
from ocog_lib.errors import InputError


def test_defaults_are_documented_and_one_place():
    cfg = CompressConfig()
    assert (cfg.patch_size, cfg.hash_bits, cfg.latents) == (32, 64, 32)
    assert defaults() == cfg.to_dict()
    assert set(FIELD_HELP) == {f.name for f in dataclasses.fields(CompressConfig)}
    assert cfg.hash_share == pytest.approx(1 - cfg.recon_share - cfg.rate_share)
    assert CompressConfig(hash_bits=128).hash_bits == 128


@pytest.mark.parametrize(("field", "value", "match"), [
    ("patch_size", 36, "multiple of 8"), ("hash_bits", 8, "hash_bits"),
    ("hash_bits", 136, "hash_bits"), ("hash_bits", 60, "hash_bits"), ("lmbda", 0, "lmbda"),
    ("recon_share", 1.0, "recon_share"), ("rate_share", 0.0, "rate_share"),
    ("budget_s", 0, "budget_s"), ("steps", 0, "steps"), ("lr", -1.0, "lr"),
    ("density_lr", 0.0, "density_lr"),
    ("val_fraction", 1.0, "val_fraction"), ("batch_size", True, "batch_size"),
    ("workers", -1, "workers"), ("clip_norm", 0, "clip_norm"),
])  # fmt: skip
def test_bad_values_are_named(field, value, match):
    with pytest.raises(InputError, match=match):
        CompressConfig(**{field: value})


def test_shares_must_fit_the_budget():
    with pytest.raises(InputError, match="sum at most 1"):
        CompressConfig(recon_share=0.5, rate_share=0.6)
    assert CompressConfig(recon_share=0.3, rate_share=0.7).hash_share == 0


def test_model_id_follows_what_is_learned_and_the_data():
    base = CompressConfig()
    same = dataclasses.replace(base, budget_s=5.0, steps=3, device="cpu", workers=2,
                               resume=False, checkpoint_every=7)  # fmt: skip
    assert model_id(base, "data") == model_id(same, "data")
    assert model_id(base, "data") != model_id(base, "other data")
    for change in (dict(lmbda=32.0), dict(seed=1), dict(hash_bits=32), dict(variant="default")):
        assert model_id(dataclasses.replace(base, **change), "data") != model_id(base, "data")
