"""Training in stages: checkpointed, resumed exactly, a spent budget trains no more, the
model file holds what decoding and hashing need."""

import dataclasses

import pytest
import torch

from ocog_lib.compress import train as train_module
from ocog_lib.compress.bitstream import decode, encode
from ocog_lib.compress.config import CompressConfig, model_id
from ocog_lib.compress.train import (
    load_codec,
    model_path,
    new_models,
    stage_of,
    train_codec,
)
from ocog_lib.embed.train import dataset_files
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings
from tests.support.variants import sharing_variants

TINY = CompressConfig(patch_size=32, channels=8, latents=8, hash_bits=16, hash_width=8,
                      batch_size=8, batches_per_epoch=4, checkpoint_every=2, norm_batches=1,
                      budget_s=600.0, device="cpu")  # fmt: skip


class Crash(Exception):
    pass


def _other(settings: Settings, tmp_path) -> Settings:
    return sharing_variants(settings, tmp_path / "other")


def test_stages_follow_the_budget():
    cfg = CompressConfig(recon_share=0.2, rate_share=0.5)
    assert [stage_of(cfg, u)[0] for u in (0.0, 0.19, 0.2, 0.69, 0.7, 1.0)] == [1, 1, 2, 2, 3, 3]
    assert stage_of(cfg, 0.45) == (2, pytest.approx(0.5))
    no_hash = CompressConfig(recon_share=0.3, rate_share=0.7)
    assert stage_of(no_hash, 0.99)[0] == 2 and stage_of(no_hash, 1.0)[0] == 2


def test_resume_continues_exactly(train_settings, tmp_path):
    torch.set_num_threads(1)
    cfg = dataclasses.replace(TINY, steps=6)  # stages 1, 2 x 4, 3; 4 steps an epoch
    straight = train_codec(cfg, train_settings)
    assert (straight.steps, straight.stage_steps, straight.resumed_from) == (6, (1, 4, 1), 0)
    assert [(s, st) for s, st, _ in straight.losses] == [(1, 1), (2, 2), (4, 2), (5, 2), (6, 3)]

    other = _other(train_settings, tmp_path)

    def crash_at_5(ev):
        if ev["event"] == "step" and ev["step"] == 5:
            raise Crash  # killed mid-run: the last checkpoint is step 4's

    with pytest.raises(Crash):
        train_codec(cfg, other, progress=crash_at_5)
    second = train_codec(cfg, other)
    assert (second.resumed_from, second.steps, second.trained) == (4, 6, True)
    assert (second.model_id, second.codec_id, second.losses) == (
        straight.model_id, straight.codec_id, straight.losses)
    a = torch.load(straight.model_path, weights_only=False)
    b = torch.load(second.model_path, weights_only=False)
    for part in ("codec", "head"):
        for k, v in a[part].items():
            torch.testing.assert_close(b[part][k], v, msg=f"{part}.{k}")
    assert not list(other.data_dir.rglob(".*.tmp"))

    again = train_codec(cfg, other)
    assert (again.trained, again.steps, again.resumed_from) == (False, 6, 6)
    more = train_codec(dataclasses.replace(cfg, steps=8), other)
    assert (more.trained, more.steps, more.resumed_from, more.model_id) == (
        True, 8, 6, straight.model_id)


def test_model_file_decodes_its_bitstreams(train_settings):
    torch.set_num_threads(1)
    cfg = dataclasses.replace(TINY, steps=3)
    files = dataset_files("sample", cfg.variant, train_settings, cfg.role)
    r = train_codec(cfg, train_settings)
    mid = model_id(cfg, files.fingerprint)
    assert r.model_id == mid and r.model_path == model_path(train_settings, "sample", mid)
    assert r.model_path.parent == train_settings.data_dir / "models" / "compress" / "sample"
    assert r.val_patches == 2 * 4 * 16  # rows 384..511 of both 512-px scenes, 32-px grid
    loaded = load_codec(r.model_path)
    assert loaded.codec.codec_id() == r.codec_id == loaded.meta["codec_id"]
    assert loaded.codec.tables is not None and loaded.codec.tables.key == r.codec_id
    assert loaded.meta["norm"]["mean"].shape == (4,) and loaded.meta["patch_size"] == 32
    assert loaded.head.spec.bits == 16
    x = torch.randn(2, 4, 32, 32)
    streams = encode(loaded.codec, x)  # a fresh process decodes with the stored tables
    again = load_codec(r.model_path)
    torch.testing.assert_close(decode(again.codec, streams, (4, 32, 32)),
                               decode(loaded.codec, streams, (4, 32, 32)), rtol=0, atol=0)
    codec, head = new_models(cfg, 4)
    assert codec.codec_id() != r.codec_id


def test_bad_input_is_named(train_settings, tmp_path, monkeypatch):
    with pytest.raises(InputError, match="not written yet"):
        train_codec(dataclasses.replace(TINY, variant="nope", steps=1), train_settings)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(InputError, match="not an ocog codec"):
        load_codec(bad)
    real = train_module.dataset_files

    def without_masks(*args):
        return dataclasses.replace(real(*args), masks=[])

    monkeypatch.setattr(train_module, "dataset_files", without_masks)
    with pytest.raises(InputError, match="has no masks"):
        train_codec(dataclasses.replace(TINY, steps=1), train_settings)
