import pytest
import torch

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


def test_remote_files_are_the_variants_objects_of_the_one_layout(train_variants, s3, s3_env,
                                                                 monkeypatch):
    """remote-* training reads the objects `remote_variants` writes (remote.session), under
    $OCOG_S3_BUCKET; what it streams from them equals the local files."""
    from ocog_lib.stream.dataset import make_stream
    from tests.support.s3 import BUCKET

    monkeypatch.setenv("OCOG_S3_BUCKET", BUCKET)
    cfg = resolve_loader_config("remote-default", "sample", train_variants)
    local = resolve_loader_config("local-default", "sample", train_variants)
    grid = dict(sampler="grid", patch_size=64, batch_size=8, patches_per_tile=1)
    with loader_files(local, "sample", train_variants) as (images, masks):
        want = next(iter(make_stream(images, masks, **grid)))
    prefix = f"s3://{BUCKET}/variants/sample/default/"
    with loader_files(cfg, "sample", train_variants) as (uris, mask_uris):
        assert len(uris) == len(mask_uris) == 2
        assert all(u.startswith(prefix + "scenes/") for u in uris)
        assert all(u.startswith(prefix + "masks/") for u in mask_uris)
        got = next(iter(make_stream(uris, mask_uris, **grid)))
    for key in ("image", "mask", "window"):
        assert torch.equal(got[key], want[key]), key
    listed = s3.client().list_objects_v2(Bucket=BUCKET, Prefix="variants/sample/default/")
    keys = {o["Key"] for o in listed["Contents"]}
    assert {u.removeprefix(f"s3://{BUCKET}/") for u in uris + mask_uris} <= keys
