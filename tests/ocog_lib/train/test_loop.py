"""Real training on the tiny sample (CPU): it must learn, resume exactly, and be recorded."""

import pytest
import torch

from ocog_lib import results
from ocog_lib.cli.main import main
from ocog_lib.cog.grid import TileGrid
from ocog_lib.data.lineage import verify_folder
from ocog_lib.errors import InputError
from ocog_lib.stream.samplers import SamplerConfig
from ocog_lib.train.configs import TrainConfig
from ocog_lib.train.loop import SpatialSplit, evaluate, load_model, train, train_and_record
from ocog_lib.train.metrics import ConfusionMatrix

TINY = dict(dataset="sample", max_time=None, patch_size=64, batch_size=16, width=8, depth=2,
            lr=3e-3, val_fraction=0.25, norm_batches=2, batches_per_epoch=32)


def test_split_keeps_training_and_validation_apart():
    grids = [TileGrid(512, 512, 512, 512), TileGrid(300, 400, 256, 256)]
    split = SpatialSplit(0.25, 64)
    train_w = split.train_windows(grids, SamplerConfig("random", 64, length=500, seed=3))
    val_w = split.val_windows(grids, max_patches=1000)
    limits = [split.split_row(g) for g in grids]
    assert len(train_w) == 500 and limits == [384, 236]  # 300 rows: clamped so one patch fits below
    assert all(r + 64 <= limits[f] for f, r, _ in train_w)
    assert all(r >= limits[f] for f, r, _ in val_w)
    assert len(val_w[val_w[:, 0] == 0]) == 2 * 8  # rows 384 and 448, 8 columns
    assert len(split.val_windows(grids, max_patches=5)) == 5
    with pytest.raises(InputError, match="too small"):
        split.split_row(TileGrid(100, 512, 512, 512))


@pytest.fixture(scope="module")
def learned(train_variants, tmp_path_factory):
    from ocog_lib.settings import Settings

    root = tmp_path_factory.mktemp("learned")
    (root / "data").mkdir()
    (root / "data" / "variants").symlink_to(train_variants.data_dir / "variants")
    s = Settings(data_dir=root / "data", results_db=root / "ocog.duckdb")
    torch.set_num_threads(2)
    cfg = TrainConfig(loader_config="local-default", iterations=200, eval_every=50, **TINY)
    return s, cfg, train_and_record(cfg, s)


def test_model_beats_the_majority_class_on_held_out_patches(learned):
    _, _, r = learned
    assert r.val_patches == 32 and r.steps == 200
    assert r.miou > r.baseline_miou + 0.15, (r.miou, r.baseline_miou, r.per_class_iou)
    assert r.per_class_iou["water"] > 0.3  # not vegetation everywhere
    assert [row["step"] for row in r.rows] == [0, 50, 100, 150, 200]
    assert r.samples_seen == 200 * 16 and 0 <= r.data_wait < 1 and r.samples_per_s > 0


def test_rows_and_model_file_are_recorded(learned):
    s, cfg, r = learned
    cols, rows = results.query(
        s.results_db, "SELECT step, miou, per_class_iou, device, loader_config FROM "
        "training_runs WHERE run = ? ORDER BY step", [r.run])
    assert [x[0] for x in rows] == [0, 50, 100, 150, 200]
    assert rows[-1][1] == pytest.approx(r.miou) and rows[-1][3] == "cpu"
    # lineage: every row names the variant folder's bytes it trained on
    _, hashes = results.query(s.results_db, "SELECT DISTINCT content_hash FROM training_runs "
                              "WHERE run = ?", [r.run])  # fmt: skip
    assert hashes == [(verify_folder(s.variant_dir("sample", "default")),)] == [(r.content_hash,)]
    # the stored model reproduces the recorded score on the same held-out patches
    model, meta = load_model(r.model_uri)
    assert meta["run"] == r.run and meta["miou"] == pytest.approx(r.miou)
    from ocog_lib.data.locate import variant_files
    from ocog_lib.stream.dataset import CogStream
    from ocog_lib.stream.rasters import open_raster
    from ocog_lib.train.configs import resolve_loader_config
    from ocog_lib.train.loop import _read_all

    images, masks, _ = variant_files("sample", "default", s)
    grids = [open_raster(p).grid for p in images]
    stream = CogStream(images, masks, resolve_loader_config("local-default", "sample", s)
                       .stream_config(patch_size=64, batch_size=16, dtype="float32"),
                       windows=SpatialSplit(0.25, 64).val_windows(grids, 256))
    x, y = _read_all(stream)
    stream.close()
    cm = evaluate(model, x, y, meta["norm"], 4, 255, torch.device("cpu"))
    assert cm.miou() == pytest.approx(r.miou)
    baseline = ConfusionMatrix(4)
    baseline.update(torch.full_like(y, meta["majority_class"]), y)
    assert baseline.miou() == pytest.approx(r.baseline_miou)


def test_resume_continues_exactly(train_settings, tmp_path):
    torch.set_num_threads(1)
    cfg = TrainConfig(loader_config="local-optimal", iterations=12, eval_every=4, **TINY)
    straight = train(cfg, train_settings)
    w_straight = torch.load(straight.model_path, weights_only=False)["state_dict"]

    from ocog_lib.settings import Settings

    other = Settings(data_dir=tmp_path / "d2", results_db=tmp_path / "o2.duckdb")
    (tmp_path / "d2").mkdir()
    (tmp_path / "d2" / "variants").symlink_to(train_settings.data_dir / "variants")
    class Crash(Exception):
        pass

    def crash_at_6(ev):
        if ev["event"] == "step" and ev["step"] == 6:
            raise Crash  # killed mid-run: the last checkpoint is step 4's

    with pytest.raises(Crash):
        train(cfg, other, progress=crash_at_6)
    second = train(cfg, other)
    assert second.resumed_from == 4 and second.steps == 12
    assert [r["step"] for r in second.rows] == [0, 4, 8, 12]
    w_resumed = torch.load(second.model_path, weights_only=False)["state_dict"]
    for k, v in w_straight.items():
        torch.testing.assert_close(w_resumed[k], v, msg=k)
    assert not list(other.data_dir.rglob(".*.tmp"))
    # a finished budget starts a new run; a changed setting never resumes
    again = train(cfg, other)
    assert again.resumed_from == 0 and again.run != second.run
    with pytest.raises(InputError, match="budget"):
        TrainConfig(max_time=None, iterations=None)


def test_model_comparison_shows_loader_configs_side_by_side(train_settings, monkeypatch,
                                                              capsys):
    monkeypatch.setenv("OCOG_DATA_DIR", str(train_settings.data_dir))
    monkeypatch.setenv("OCOG_DUCKDB", str(train_settings.results_db))
    monkeypatch.delenv("OCOG_MODEL_STORE", raising=False)
    for name in ("local-default", "local-optimal"):
        assert main(["train", "--dataset", "sample", "--config", name, "--iterations", "4",
                     "--eval-every", "2", "--patch-size", "64", "--width", "4", "--json"]) == 0
    capsys.readouterr()
    assert main(["query", "--json", "select * from model_comparison"]) == 0
    import json

    out = json.loads(capsys.readouterr().out)
    assert [r["loader_config"] for r in out["rows"]] == ["local-default", "local-optimal"]
    assert all(r["samples_seen"] == 4 * 16 and r["final_miou"] is not None for r in out["rows"])
