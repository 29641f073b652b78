"""The search space: trial configs, and the named baselines' params reproduce them."""

from dataclasses import replace

import optuna
import pytest

from ocog_lib.cog.profiles import profile_from_spec
from ocog_lib.search.space import TrialConfig, baseline_configs, baseline_params, on_variant
from tests.support.search import SMALL


def test_baseline_params_reproduce_the_baseline_config(search_data):
    for storage in ("local", "remote"):
        for label, cfg in baseline_configs("sample", storage, search_data, SMALL):
            trial = optuna.trial.FixedTrial(baseline_params(cfg, storage, SMALL))
            assert SMALL.suggest(trial, storage) == replace(cfg, variant=None), label


def test_trial_config_specs_and_normalization():
    cfg = TrialConfig(codec="LERC_ZSTD", level=9, predictor=2, block_size=256, sampler="random",
                      patches_per_tile=8).normalized()  # fmt: skip
    assert (cfg.codec, cfg.predictor, cfg.patches_per_tile) == ("lerc_zstd", None, 1)
    prof = profile_from_spec(cfg.profile_spec())
    assert (prof.compression, prof.level, prof.blocksize, prof.max_z_error) == (
        "LERC_ZSTD", 9, 256, 0.0)  # fmt: skip
    none = TrialConfig(codec="none", level=6, predictor=2).normalized()
    assert none.profile_spec() == "none:block=512" and none.variant_name() == "none_b512"
    with pytest.raises(Exception, match="codec 'lzw'"):
        TrialConfig(codec="lzw").normalized()


def test_a_named_variant_keeps_its_profile_and_the_trials_knobs(search_data):
    knobs = TrialConfig(codec="zstd", level=1, block_size=1024, sampler="block", prefetch=7)
    cfg = on_variant(knobs, "sample", "optimal_remote", search_data)
    # tests/support/benchdata writes optimal_remote as LERC_ZSTD with 256 px tiles
    assert (cfg.codec, cfg.block_size, cfg.variant) == ("lerc_zstd", 256, "optimal_remote")
    assert (cfg.sampler, cfg.prefetch) == ("block", 7)
    assert cfg.variant_name() == "optimal_remote" and cfg.as_dict()["profile"] is None
