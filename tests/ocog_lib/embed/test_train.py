"""Training the encoder: checkpointed, resumed exactly, a spent budget trains no more, the
model stored under the models folder by its id."""

import dataclasses

import pytest
import torch

from ocog_lib.embed.config import EmbedConfig, model_id
from ocog_lib.embed.train import dataset_files, load_encoder, train_encoder
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings
from tests.support.variants import sharing_variants

TINY = EmbedConfig(patch_size=32, neighbour_px=16, distant_px=96, batch_size=8, width=8,
                   batches_per_epoch=4, checkpoint_every=2, norm_batches=1, budget_s=600.0,
                   device="cpu")  # fmt: skip


class Crash(Exception):
    pass


def _other(settings: Settings, tmp_path) -> Settings:
    return sharing_variants(settings, tmp_path / "other")


def test_resume_continues_exactly(train_settings, tmp_path):
    torch.set_num_threads(1)
    cfg = dataclasses.replace(TINY, steps=6)  # 4 steps an epoch: crosses into the second
    straight = train_encoder(cfg, train_settings)
    assert (straight.steps, straight.triplets_seen, straight.resumed_from) == (6, 48, 0)
    assert [s for s, _ in straight.losses] == [2, 4, 6]

    other = _other(train_settings, tmp_path)

    def crash_at_5(ev):
        if ev["event"] == "step" and ev["step"] == 5:
            raise Crash  # killed mid-run: the last checkpoint is step 4's

    with pytest.raises(Crash):
        train_encoder(cfg, other, progress=crash_at_5)
    second = train_encoder(cfg, other)
    assert (second.resumed_from, second.steps, second.trained) == (4, 6, True)
    assert second.model_id == straight.model_id
    a = torch.load(straight.model_path, weights_only=False)["state_dict"]
    b = torch.load(second.model_path, weights_only=False)["state_dict"]
    for k, v in a.items():
        torch.testing.assert_close(b[k], v, msg=k)
    assert not list(other.data_dir.rglob(".*.tmp"))

    # spent: nothing more is trained; a larger budget continues the same model
    again = train_encoder(cfg, other)
    assert (again.trained, again.steps, again.resumed_from) == (False, 6, 6)
    more = train_encoder(dataclasses.replace(cfg, steps=8), other)
    assert (more.trained, more.steps, more.resumed_from, more.model_id) == (
        True, 8, 6, straight.model_id)
    fresh = train_encoder(dataclasses.replace(cfg, resume=False), other)
    assert (fresh.resumed_from, fresh.steps) == (0, 6)


def test_model_file_place_and_contents(train_settings, monkeypatch, tmp_path):
    torch.set_num_threads(1)
    cfg = dataclasses.replace(TINY, steps=1, dim=64)
    files = dataset_files("sample", cfg.variant, train_settings, cfg.role)
    mid = model_id(cfg, files.fingerprint)
    saved = []

    class Store:
        def save(self, local, key):
            saved.append((local, key))
            return f"mem://{key}"

    r = train_encoder(cfg, train_settings, store=Store())
    assert r.model_id == mid and r.model_uri == f"mem://embed/sample/{mid}.pt"
    assert r.model_path == train_settings.data_dir / "models" / "embed" / "sample" / f"{mid}.pt"
    assert saved == [(r.model_path, f"embed/sample/{mid}.pt")]
    assert r.checkpoint_path.parent == train_settings.data_dir / "embedding" / "sample" / mid
    assert r.val_patches == 2 * 4 * 16  # rows 384..511 of both 512-px scenes, 32-px grid
    model, meta = load_encoder(r.model_path)
    assert model.spec.dim == 64 and meta["patch_size"] == 32 and meta["model_id"] == mid
    assert meta["norm"]["mean"].shape == (4,) and (meta["norm"]["std"] > 0).all()
    assert meta["fingerprint"] == files.fingerprint and meta["config"]["dim"] == 64

    monkeypatch.setenv("OCOG_MODEL_STORE", str(tmp_path / "store"))
    moved = train_encoder(cfg, train_settings)
    assert moved.model_path == tmp_path / "store" / "embed" / "sample" / f"{mid}.pt"
    assert moved.model_path.is_file() and not moved.trained


def test_bad_input_is_named(train_settings, tmp_path):
    with pytest.raises(InputError, match="not written yet"):
        train_encoder(dataclasses.replace(TINY, variant="nope", steps=1), train_settings)
    with pytest.raises(InputError, match="too small"):
        train_encoder(dataclasses.replace(TINY, patch_size=400, neighbour_px=8, steps=1),
                      train_settings)  # fmt: skip
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(InputError, match="not an ocog encoder"):
        load_encoder(bad)
