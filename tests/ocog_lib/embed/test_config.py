"""EmbedConfig: defaults in one place, every bad value named, a model id per config + data."""

import dataclasses

import pytest

from ocog_lib.embed.config import FIELD_HELP, EmbedConfig, defaults, model_id
from ocog_lib.errors import InputError


def test_defaults_are_documented_and_one_place():
    cfg = EmbedConfig()
    assert (cfg.dim, cfg.patch_size, cfg.h3_resolution) == (16, 64, None)
    assert defaults() == cfg.to_dict()
    assert set(FIELD_HELP) == {f.name for f in dataclasses.fields(EmbedConfig)}
    assert EmbedConfig(dim=64).dim == 64


@pytest.mark.parametrize(("field", "value", "match"), [
    ("dim", 1, "dim"), ("dim", 0, "dim"), ("patch_size", 30, "multiple of 4"),
    ("objective", "mse", "objective"), ("neighbour_px", 0, "neighbour_px"),
    ("neighbour_px", 65, "neighbour_px"), ("distant_px", 64, "distant_px"),
    ("budget_s", 0, "budget_s"), ("steps", 0, "steps"), ("lr", -1.0, "lr"),
    ("val_fraction", 1.0, "val_fraction"), ("h3_resolution", 16, "h3_resolution"),
    ("batch_size", True, "batch_size"), ("workers", -1, "workers"),
])  # fmt: skip
def test_bad_values_are_named(field, value, match):
    with pytest.raises(InputError, match=match):
        EmbedConfig(**{field: value})


def test_model_id_follows_what_is_learned_and_the_data():
    base = EmbedConfig()
    same = dataclasses.replace(base, budget_s=5.0, steps=3, device="cpu", workers=2,
                               h3_resolution=6, resume=False)  # fmt: skip
    assert model_id(base, "data") == model_id(same, "data")
    assert model_id(base, "data") != model_id(base, "other data")
    for change in (dict(dim=64), dict(seed=1), dict(lr=1e-3), dict(variant="default")):
        assert model_id(dataclasses.replace(base, **change), "data") != model_id(base, "data")
