"""DDP training, for real: 2 gloo processes on the CPU against one process on the same data."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist

from ocog_lib import results
from ocog_lib.cli.main import main
from ocog_lib.data.locate import variant_files
from ocog_lib.data.manifest import DatasetManifest
from ocog_lib.errors import InputError
from ocog_lib.stream.dataset import CogStream
from ocog_lib.train.configs import TrainConfig, resolve_loader_config
from ocog_lib.train.distributed import SOLO, RankFailed, Ranks, check_nproc, launch
from ocog_lib.train.loop import _prepare, load_model, train
from ocog_lib.train.model import UNet, UNetSpec
from tests.support.processes import alive

TINY = dict(dataset="sample", max_time=None, patch_size=64, batch_size=16, width=8, depth=2,
            lr=3e-3, val_fraction=0.25, norm_batches=2, batches_per_epoch=32, resume=False)


# ---- targets run in the ranks (module level: spawn imports them by name) ---------------


def _read_share(images, masks, scfg, windows, batch_size, ranks, progress):
    """The windows this rank's stream delivers, gathered on every rank."""
    cfg = dataclasses.replace(scfg, batch_size=ranks.per_rank(batch_size))
    stream = CogStream(images, masks, cfg, windows=np.empty((0, 3), dtype=np.int64))
    try:
        got = [b["window"].numpy().copy() for b in stream.loader(ranks.share(windows,
                                                                              batch_size))]
    finally:
        stream.close()
    out = [None] * ranks.world
    dist.all_gather_object(out, np.concatenate(got))
    return out


def _first_gradient(x, y, ranks, progress=None):
    """Step 1's gradient as the loop computes it: global-batch BatchNorm, the loss summed
    over this rank's share and divided by the global batch's labelled pixels, DDP."""
    torch.manual_seed(0)
    model = ranks.sync_bn(UNet(UNetSpec(4, 4, 4, 3)))
    net = ranks.wrap(model)
    b = len(x) // ranks.world
    xs, ys = x[ranks.rank * b : (ranks.rank + 1) * b], y[ranks.rank * b : (ranks.rank + 1) * b]
    labelled = ranks.all_sum((ys != 255).sum().float())
    crit = torch.nn.CrossEntropyLoss(ignore_index=255, reduction="sum")
    (crit(net(xs), ys) * (ranks.world / labelled)).backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    return grads, {k: v.clone() for k, v in model.named_buffers()}


def _fail(folder, mode, ranks, progress):
    """Rank 1 raises (or dies) while rank 0 waits for it in a collective."""
    (folder / f"{ranks.rank}.pid").write_text(str(os.getpid()))
    if ranks.rank == 1:
        if mode == "exit":
            os._exit(3)
        raise ValueError("boom on purpose")
    dist.all_reduce(torch.ones(1))
    return "unreachable"


# ---- tests ---------------------------------------------------------------------------------


def test_bad_process_counts_are_input_errors():
    with pytest.raises(InputError, match="nproc 0"):
        TrainConfig(nproc=0, iterations=1)
    with pytest.raises(InputError, match="global batch"):
        TrainConfig(nproc=3, batch_size=16, iterations=1)
    with pytest.raises(InputError, match="4 x cores"):
        check_nproc(4 * (os.cpu_count() or 1) + 1, torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="one process per GPU"):
            check_nproc(2, torch.device("cuda"))
    assert check_nproc(2, torch.device("cpu")) == "gloo"
    # nproc does not change what is learned: a run may resume under another count
    assert TrainConfig(nproc=2, iterations=1).learning_key() == TrainConfig(
        iterations=1).learning_key()


def test_shares_deal_each_global_batch_once():
    w = np.arange(3 * 35).reshape(35, 3)  # 4 whole batches of 8, 3 windows left over
    parts = [Ranks(r, 2).share(w, 8) for r in range(2)]
    assert [len(p) for p in parts] == [16, 16]
    rebuilt = np.concatenate([np.concatenate([p[i * 4 : (i + 1) * 4] for p in parts])
                              for i in range(4)])  # fmt: skip
    np.testing.assert_array_equal(rebuilt, w[:32])
    assert SOLO.share(w, 8) is w


def test_two_ranks_stream_the_single_process_epoch(train_settings):
    s = train_settings
    cfg = TrainConfig(loader_config="local-optimal", iterations=1, **TINY)
    loader = resolve_loader_config(cfg.loader_config, "sample", s)
    images, masks, _ = variant_files("sample", loader.variant, s)
    manifest = DatasetManifest.load(s.variant_dir("sample", loader.variant))
    data = _prepare(cfg, loader, manifest, images, masks, torch.device("cpu"))
    windows = data.epoch_windows(cfg.seed, 1)
    scfg = dataclasses.replace(data.stream.cfg, workers=0)
    data.stream.close()
    got = launch(_read_share, (images, masks, scfg, windows, cfg.batch_size), 2, "gloo",
                 timeout=60, threads=1)
    assert [len(g) for g in got] == [len(windows) // 2] * 2
    b = cfg.batch_size // 2  # each global batch: rank 0's 8 windows, then rank 1's
    rebuilt = np.concatenate([np.concatenate([g[i * b : (i + 1) * b] for g in got])
                              for i in range(len(windows) // cfg.batch_size)])  # fmt: skip
    np.testing.assert_array_equal(rebuilt, windows)  # none read twice, none skipped


def test_ddp_gradient_at_step_one_is_the_single_process_gradient():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 4, 32, 32, generator=g)
    y = torch.randint(0, 4, (8, 32, 32), generator=g)
    y[4:, :, :28] = 255  # rank 1's share is mostly unlabelled: the mean must still be global
    torch.set_num_threads(1)
    want_g, want_b = _first_gradient(x, y, SOLO)
    got_g, got_b = launch(_first_gradient, (x, y), 2, "gloo", timeout=60, threads=1)
    for k, v in want_g.items():
        torch.testing.assert_close(got_g[k], v, rtol=1e-4, atol=1e-6, msg=k)
    for k, v in want_b.items():  # BatchNorm running statistics of the global batch
        torch.testing.assert_close(got_b[k], v, rtol=1e-4, atol=1e-6, msg=k)


def test_two_process_run_matches_one_and_is_recorded_once(train_settings, monkeypatch,
                                                         capsys):
    s = train_settings
    monkeypatch.setenv("OCOG_DATA_DIR", str(s.data_dir))
    monkeypatch.setenv("OCOG_DUCKDB", str(s.results_db))
    monkeypatch.delenv("OCOG_MODEL_STORE", raising=False)
    assert main(["train", "--dataset", "sample", "--config", "local-default", "--iterations",
                 "8", "--eval-every", "4", "--patch-size", "64", "--width", "8", "--lr",
                 "3e-3", "--nproc", "2", "--no-resume", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["steps"] == 8 and out["device"] == "cpu"
    _, rows = results.query(s.results_db, "SELECT run, step, loss, miou, samples_seen, "
                            "config FROM training_runs ORDER BY step")  # fmt: skip
    assert [r[1] for r in rows] == [0, 4, 8] and {r[0] for r in rows} == {out["run"]}
    config = rows[-1][5]
    assert rows[-1][4] == 8 * 16
    assert (json.loads(config) if isinstance(config, str) else config)["nproc"] == 2
    ddp_model, meta = load_model(out["model"])
    assert meta["miou"] == pytest.approx(out["miou"])

    torch.set_num_threads(1)  # the same run in one process
    cfg = TrainConfig(loader_config="local-default", iterations=8, eval_every=4,
                      patch_size=64, width=8, lr=3e-3, resume=False)
    one = train(cfg, s)
    assert [r["step"] for r in one.rows] == [0, 4, 8]
    for mine, theirs in zip(one.rows[1:], rows[1:], strict=True):  # reduction order only
        assert theirs[2] == pytest.approx(mine["loss"], rel=1e-2)
        assert theirs[3] == pytest.approx(mine["miou"], abs=0.02)
    solo_model, _ = load_model(one.model_path)
    torch.manual_seed(cfg.seed)
    init = UNet(solo_model.spec)

    def flat(m):
        return torch.cat([p.detach().reshape(-1) for p in m.parameters()])

    moved = float((flat(solo_model) - flat(init)).norm())
    # Adam's early steps are about lr * sign(gradient): where a gradient is near zero the
    # float reduction order flips it, so the weights drift apart a little (measured 9% of
    # the distance moved after 8 steps); the exact check is the step-1 gradient test
    apart = float((flat(ddp_model) - flat(solo_model)).norm())
    assert apart < 0.2 * moved, (apart, moved)


@pytest.mark.parametrize("mode, cause", [("raise", "ValueError: boom on purpose"),
                                         ("exit", "exited with code 3")])
def test_a_failing_rank_fails_the_run_fast_and_leaves_no_process(tmp_path, mode, cause):
    with pytest.raises(RankFailed, match="rank 1 of 2") as err:
        launch(_fail, (tmp_path, mode), 2, "gloo", timeout=120, threads=1)
    # failed by the rank's own error, not by the launcher giving up on a hung peer
    assert cause in str(err.value) and "timed out" not in str(err.value).lower()
    pids = [int(p.read_text()) for p in sorted(tmp_path.glob("*.pid"))]
    assert len(pids) == 2 and not any(alive(p) for p in pids)
