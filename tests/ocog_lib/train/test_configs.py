import pytest

from ocog_lib import results
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings
from ocog_lib.train.configs import LOADER_CONFIGS, loader_files, resolve_loader_config


def test_named_profiles_without_a_search(tmp_path):
    s = Settings(data_dir=tmp_path, results_db=tmp_path / "none.duckdb")
    names = {n: resolve_loader_config(n, "sample", s) for n in LOADER_CONFIGS}
    assert names["local-default"].variant == "default"
    assert names["local-default"].stream["sampler"] == "random"
    assert names["local-optimal"].variant == "optimal_local"
    assert names["remote-optimal"].variant == "optimal_remote"
    assert {c.storage for c in names.values()} == {"local", "remote"}
    assert all(c.source == "profile" for c in names.values())
    with pytest.raises(InputError, match="unknown"):
        resolve_loader_config("fastest", "sample", s)


def test_optimal_takes_the_recorded_search_winner(tmp_path):
    s = Settings(data_dir=tmp_path, results_db=tmp_path / "ocog.duckdb")
    rows = [
        dict(study="s1", dataset="sample", storage="local", trial=i, state="COMPLETE",
             value=v, params=dict(variant=var, sampler="grid", threads=t, patch_size=999))
        for i, (v, var, t) in enumerate([(10.0, "default", 1), (50.0, "zstd_b256", 2)])
    ]
    results.write_rows(s.results_db, "search_trials", rows)
    best = resolve_loader_config("local-optimal", "sample", s)
    assert best.source == "best_configs"
    assert best.variant == "zstd_b256" and best.stream["threads"] == 2
    assert best.stream["sampler"] == "grid"
    assert "patch_size" not in best.stream  # the model's, not the loader's
    # no remote search recorded: the named profile
    assert resolve_loader_config("remote-optimal", "sample", s).source == "profile"
    # another dataset: the named profile
    assert resolve_loader_config("local-optimal", "potsdam", s).variant == "optimal_local"


def test_local_files_need_a_written_variant(tmp_path, train_variants):
    cfg = resolve_loader_config("local-default", "sample", train_variants)
    with loader_files(cfg, "sample", train_variants) as (images, masks):
        assert len(images) == len(masks) == 2  # the two real scenes
        assert all("scenes/" in p for p in images) and all("masks/" in p for p in masks)
    empty = Settings(data_dir=tmp_path, results_db=tmp_path / "x.duckdb")
    with pytest.raises(InputError, match="not written yet"), loader_files(cfg, "sample", empty):
        pass
