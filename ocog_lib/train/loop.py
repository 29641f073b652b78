"""Training and evaluation: a U-Net fed by the streaming engine, scored on held-out patches.

The split is spatial, per raster: the bottom `val_fraction` of each image's rows (rounded
to whole patches) is held out; training windows lie wholly above it, validation patches
are the grid sampler's windows wholly inside it, read once and kept in memory. So the
scores come from pixels the model never saw, on every dataset, however many files it has.

One loop serves the asset, the CLI and the tests; `train_and_record` adds the model store
and the DuckDB rows. A checkpoint is written (atomically) at every evaluation; a run with
the same settings and an unspent budget continues from it, on the same data order.
`nproc` > 1 runs `_train` in that many DDP ranks (`distributed.py`): each reads its share
of every global batch, evaluates a share of the held-out patches; rank 0 writes.
"""

from __future__ import annotations

import dataclasses
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ocog_lib.atomic import atomic_path
from ocog_lib.data.locate import variant_content_hash
from ocog_lib.data.manifest import DatasetManifest
from ocog_lib.errors import InputError
from ocog_lib.host import NvmlMonitor
from ocog_lib.settings import Settings
from ocog_lib.stream.dataset import CogStream
from ocog_lib.stream.device import autocast, pick_device
from ocog_lib.stream.split import SpatialSplit
from ocog_lib.train.configs import (
    LoaderConfig,
    TrainConfig,
    loader_files,
    resolve_loader_config,
)
from ocog_lib.train.distributed import SOLO, Ranks, check_nproc, launch
from ocog_lib.train.metrics import ConfusionMatrix, per_class_iou
from ocog_lib.train.model import UNet, UNetSpec, build_unet
from ocog_lib.train.store import ModelStore, model_store


@dataclass
class TrainResult:
    run: str
    dataset: str
    loader_config: str
    device: str
    steps: int
    samples_seen: int
    seconds: float
    miou: float
    per_class_iou: dict[str, float | None]
    baseline_miou: float  # majority class of the training sample, same patches
    baseline_per_class_iou: dict[str, float | None]
    samples_per_s: float  # training samples per second of training-loop time
    data_wait: float  # share of training-loop time spent waiting for batches
    startup_s: float  # wait for the first batch, kept out of data_wait
    val_patches: int
    rows: list[dict] = field(default_factory=list)
    model_path: Path | None = None
    model_uri: str | None = None
    resumed_from: int = 0
    gpu_util: float | None = None
    loader: dict = field(default_factory=dict)
    content_hash: str | None = None  # of the variant trained on (data.lineage)


# ---- the split ---------------------------------------------------------------------------


def checkpoint_path(settings: Settings, dataset: str, loader_config: str) -> Path:
    return settings.data_dir / "training" / dataset / loader_config / "checkpoint.pt"


def _save(obj: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _majority_class(masks: torch.Tensor, num_classes: int) -> int:
    flat = masks.reshape(-1).to(torch.int64)
    flat = flat[flat < num_classes]
    if flat.numel() == 0:
        raise InputError("training masks", "every sampled pixel is ignored (255)")
    return int(torch.bincount(flat, minlength=num_classes).argmax())


def _norm_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-band mean and std over the sampled training patches (float64 for stability)."""
    x = images.to(torch.float64).transpose(0, 1).reshape(images.shape[1], -1)
    mean, std = x.mean(1), x.std(1)
    return mean.float(), torch.clamp(std, min=1e-6).float()


def _read_all(stream: CogStream) -> tuple[torch.Tensor, torch.Tensor]:
    imgs, masks = [], []
    for b in stream.iter_batches():
        imgs.append(b["image"].clone())
        masks.append(b["mask"].clone())
    return torch.cat(imgs), torch.cat(masks)


def evaluate(model: UNet, images: torch.Tensor, masks: torch.Tensor, norm: dict,
             num_classes: int, ignore_index: int, device: torch.device, *,
             batch_size: int = 32, amp: bool = False) -> ConfusionMatrix:
    """Confusion matrix of the model on in-memory patches."""
    cm = ConfusionMatrix(num_classes, ignore_index)
    mean = norm["mean"].to(device)[None, :, None, None]
    std = norm["std"].to(device)[None, :, None, None]
    was_training = model.training
    model.eval()
    with torch.no_grad(), autocast(device, amp):
        for i in range(0, len(images), batch_size):
            x = (images[i : i + batch_size].to(device, non_blocking=True) - mean) / std
            pred = model(x).argmax(1)
            cm.update(pred.cpu(), masks[i : i + batch_size])
    model.train(was_training)
    return cm


def load_model(path: str | Path, device: str = "cpu") -> tuple[UNet, dict]:
    """A saved model, ready for inference, and its metadata (norm, classes, scores)."""
    try:
        saved = torch.load(Path(path), map_location=device, weights_only=False)
        model = build_unet(saved["spec"])
        model.load_state_dict(saved["state_dict"])
    except (OSError, KeyError, RuntimeError) as exc:
        raise InputError(path, f"not an ocog model file ({exc})") from exc
    model.eval()
    return model.to(device), {k: v for k, v in saved.items() if k != "state_dict"}


# ---- the loop ----------------------------------------------------------------------------


ProgressFn = Callable[[dict], None]


def train(cfg: TrainConfig, settings: Settings | None = None, *,
          progress: ProgressFn | None = None) -> TrainResult:
    """Train until a budget is spent; evaluate and checkpoint every `eval_every` steps."""
    settings = settings or Settings.from_env()
    loader = resolve_loader_config(cfg.loader_config, cfg.dataset, settings)
    backend = check_nproc(cfg.nproc, pick_device(cfg.device))
    with loader_files(loader, cfg.dataset, settings, cfg.role) as (images, masks):
        if cfg.nproc == 1:
            return _train(cfg, settings, loader, images, masks, progress=progress)
        # the ranks inherit the files' environment (remote: the session's endpoint)
        return launch(_train, (cfg, settings, loader, images, masks), cfg.nproc, backend,
                      progress=progress)


@dataclass
class _Data:
    """What a run reads. `stream` holds the parsed, checked headers and the engine config
    (tile reuse and the shuffle group decided once, for every epoch); each epoch's windows
    go to its loader, so in this process its tile cache carries over between epochs."""

    stream: CogStream
    split: SpatialSplit
    classes: dict[int, str]
    ignore: int
    val_x: torch.Tensor
    val_y: torch.Tensor

    @property
    def num_classes(self) -> int:
        return max(self.classes) + 1

    def epoch_windows(self, seed: int, epoch: int) -> np.ndarray:
        sc = dataclasses.replace(self.stream.cfg.sampler_config(), seed=seed * 1_000_003 + epoch)
        return self.split.train_windows(self.stream.grids, sc)


def _read_windows(s: CogStream, windows: np.ndarray, **changes) -> tuple[torch.Tensor, ...]:
    """Images and masks of `windows` over the rasters of `s`, read once in this process."""
    cfg = dataclasses.replace(s.cfg, workers=0, pin_memory=False, **changes)
    stream = CogStream(s.images, s.masks, cfg, windows=windows, rasters=s.rasters)
    try:
        return _read_all(stream)
    finally:
        stream.close()


@dataclass
class _Run:
    """A run's learning state: what a checkpoint holds."""

    model: UNet
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    norm: dict
    majority: int
    counters: dict
    rows: list[dict]
    run: str


def _prepare(cfg: TrainConfig, loader: LoaderConfig, manifest: DatasetManifest,
             images: list[str], masks: list[str], device: torch.device,
             ranks: Ranks = SOLO) -> _Data:
    """The training stream over the files (this rank's batches), and the held-out patches
    read into memory."""
    extra = {} if cfg.workers is None else {"workers": cfg.workers}
    scfg = loader.stream_config(patch_size=cfg.patch_size,
                                batch_size=ranks.per_rank(cfg.batch_size),
                                length=cfg.batches_per_epoch * cfg.batch_size, seed=cfg.seed,
                                dtype="float32", drop_last=True,
                                pin_memory=device.type == "cuda", **extra)
    stream = CogStream(images, masks, scfg, windows=np.empty((0, 3), dtype=np.int64))
    split = SpatialSplit(cfg.val_fraction, cfg.patch_size)
    val = split.val_windows(stream.grids, cfg.max_val_patches)
    val_x, val_y = _read_windows(stream, val, sampler="grid", drop_last=False)
    return _Data(stream, split, manifest.classes, manifest.ignore_index, val_x, val_y)


def _start(cfg: TrainConfig, data: _Data, device: torch.device, ckpt: Path,
           ranks: Ranks = SOLO) -> _Run:
    """The model and optimizer, from the checkpoint to continue from or new (the same on
    every rank: same seed, same file)."""
    state = _load_checkpoint(ckpt, cfg) if cfg.resume else None
    torch.manual_seed(cfg.seed)
    bands = len(data.stream.bands)
    model = UNet(UNetSpec(bands, data.num_classes, cfg.width, cfg.depth)).to(device)
    model = ranks.sync_bn(model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    use_scaler = (device.type == "cuda" and cfg.amp and not torch.cuda.is_bf16_supported())
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        return _Run(model, opt, scaler, state["norm"], state["majority"], state["counters"],
                    state["rows"], state["run"])
    sc = dataclasses.replace(data.stream.cfg.sampler_config(), seed=cfg.seed + 7919,
                             length=cfg.norm_batches * cfg.batch_size)
    nx, ny = _read_windows(data.stream, data.split.train_windows(data.stream.grids, sc))
    mean, std = _norm_stats(nx)
    counters = dict(step=0, epoch=0, in_epoch=0, samples=0, seconds=0.0, wait=0.0,
                    loop=0.0, startup=None, loss_sum=0.0, loss_n=0)
    return _Run(model, opt, scaler, {"mean": mean, "std": std},
                _majority_class(ny, data.num_classes), counters, [], uuid.uuid4().hex[:12])


class _Loop:
    """One run's epochs: optimizer steps, an evaluation with a checkpoint every
    `eval_every` steps and at the end, until the first budget is spent."""

    def __init__(self, cfg: TrainConfig, data: _Data, run: _Run, device: torch.device,
                 ckpt: Path, record: dict, progress: ProgressFn | None,
                 ranks: Ranks = SOLO):
        self.cfg, self.data, self.run, self.device = cfg, data, run, device
        self.ckpt, self.record, self.progress, self.ranks = ckpt, record, progress, ranks
        self.c = run.counters
        self.net = ranks.wrap(run.model)  # what training calls: DDP averages gradients
        # summed, then divided by the labelled pixels of the global batch: the mean of
        # one process over the same batch, whatever each rank's share of ignored pixels
        self.crit = torch.nn.CrossEntropyLoss(ignore_index=data.ignore, reduction="sum")
        self.mean = run.norm["mean"].to(device)[None, :, None, None]
        self.std = run.norm["std"].to(device)[None, :, None, None]
        self.loss_acc = torch.zeros((), device=device)
        self.n_acc = 0
        self.t_seg = time.perf_counter()
        self.seconds_at_seg = self.c["seconds"]

    def budget_used(self) -> float:
        cfg, used = self.cfg, 0.0
        if cfg.iterations is not None:
            used = max(used, self.c["step"] / cfg.iterations)
        if cfg.max_time is not None:
            used = max(used, self.c["seconds"] / cfg.max_time)
        return min(used, 1.0)

    def spent(self) -> bool:
        cfg, c = self.cfg, self.c
        return ((cfg.iterations is not None and c["step"] >= cfg.iterations)
                or (cfg.max_time is not None and c["seconds"] >= cfg.max_time))

    def run_epochs(self) -> None:
        if not self.run.rows:
            self.evaluate()
        self.t_seg = time.perf_counter()
        self.seconds_at_seg = self.c["seconds"]
        while not self.spent():
            if not self.epoch():
                break  # the budget ran out inside the epoch: a resume continues it
            self.c["epoch"] += 1
            self.c["in_epoch"] = 0

    def epoch(self) -> bool:
        """The rest of the current epoch's batches; True when they ran out."""
        cfg, c = self.cfg, self.c
        windows = self.data.epoch_windows(cfg.seed, c["epoch"])[c["in_epoch"] * cfg.batch_size:]
        it = iter(self.data.stream.loader(self.ranks.share(windows, cfg.batch_size)))
        first = c["startup"] is None
        try:
            while not self.spent():
                t0 = time.perf_counter()
                batch = next(it, None)
                t1 = time.perf_counter()
                if batch is None:
                    return True
                c["in_epoch"] += 1
                if not self.step(batch):
                    continue
                t2 = time.perf_counter()
                if first:
                    c["startup"], first = t1 - t0, False
                else:
                    c["wait"] += t1 - t0
                    c["loop"] += t2 - t0
                self.stepped(batch["mask"].shape[0])
            return False
        finally:
            if hasattr(it, "close"):
                it.close()

    def step(self, batch: dict) -> bool:
        """One optimizer step on `batch`; False (no step) when no pixel is labelled: a
        cross-entropy of nothing is NaN."""
        y = batch["mask"].to(self.device, non_blocking=True).long()
        labelled = self.ranks.all_sum((y != self.data.ignore).sum().float())
        if not bool(labelled > 0):
            return False
        x = (batch["image"].to(self.device, non_blocking=True) - self.mean) / self.std
        run = self.run
        with autocast(self.device, self.cfg.amp):
            loss = self.crit(self.net(x), y) * (self.ranks.world / labelled)
        # cosine decay over the budget to 5% of lr: the last evaluations settle
        frac = 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * self.budget_used()))
        for group in run.opt.param_groups:
            group["lr"] = self.cfg.lr * frac
        run.opt.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        run.scaler.step(run.opt)
        run.scaler.update()
        self.loss_acc += loss.detach().float()
        self.n_acc += 1
        return True

    def stepped(self, samples: int) -> None:
        """Count a step; evaluate when one is due; report progress."""
        c = self.c
        c["step"] += 1
        c["samples"] += samples * self.ranks.world
        c["seconds"] = self.clock()
        if c["step"] % self.cfg.eval_every == 0 or self.spent():
            c["loss_sum"] += float(self.ranks.all_sum(self.loss_acc)) / self.ranks.world
            c["loss_n"] += self.n_acc
            self.loss_acc.zero_()
            self.n_acc = 0
            self.evaluate()
            c["seconds"] = self.clock()
        if self.progress:
            self.progress(dict(event="step", step=c["step"], seconds=c["seconds"]))

    def clock(self) -> float:
        """Training seconds so far, the same on every rank (the slowest's)."""
        return self.ranks.agree(self.seconds_at_seg + time.perf_counter() - self.t_seg)

    def evaluate(self) -> None:
        """Score the held-out patches (each rank a share, the counts summed), append the
        row, write the checkpoint (rank 0)."""
        cfg, data, run, c, r = self.cfg, self.data, self.run, self.c, self.ranks
        cm = evaluate(run.model, data.val_x[r.rank :: r.world], data.val_y[r.rank :: r.world],
                      run.norm, data.num_classes, data.ignore, self.device,
                      batch_size=cfg.batch_size, amp=cfg.amp)
        cm.counts = r.sum_counts(cm.counts)
        loss = c["loss_sum"] / c["loss_n"] if c["loss_n"] else None
        run.rows.append(dict(
            run=run.run, dataset=cfg.dataset, loader_config=cfg.loader_config, step=c["step"],
            seconds=round(c["seconds"], 4), samples_seen=c["samples"], loss=loss,
            miou=cm.miou(), per_class_iou=per_class_iou(cm, data.classes),
            data_wait=c["wait"] / c["loop"] if c["loop"] else None,
            samples_per_s=c["samples"] / c["loop"] if c["loop"] else None,
            device=str(self.device), config=self.record,
        ))
        c["loss_sum"], c["loss_n"] = 0.0, 0
        if r.main:
            _save(dict(model=run.model.state_dict(), optimizer=run.opt.state_dict(),
                       scaler=run.scaler.state_dict(), norm=run.norm, majority=run.majority,
                       counters=dict(c), rows=run.rows, run=run.run, key=cfg.learning_key()),
                  self.ckpt)
        if self.progress:
            last = run.rows[-1]
            self.progress(dict(event="eval", **{k: last[k] for k in ("step", "miou", "loss")}))


def _train(cfg: TrainConfig, settings: Settings, loader: LoaderConfig, images: list[str],
           masks: list[str], ranks: Ranks = SOLO,
           progress: ProgressFn | None = None) -> TrainResult:
    """One process's run; under `launch`, one rank's (`ranks`), in step with the others."""
    manifest = DatasetManifest.load(settings.variant_dir(cfg.dataset, loader.variant))
    content = variant_content_hash(cfg.dataset, loader.variant, settings)
    device = ranks.device(pick_device(cfg.device))
    data = _prepare(cfg, loader, manifest, images, masks, device, ranks)
    ckpt = checkpoint_path(settings, cfg.dataset, cfg.loader_config)
    run = _start(cfg, data, device, ckpt, ranks)
    ranks.barrier()  # all have read the checkpoint before rank 0 writes the next one
    resumed_from = run.counters["step"]
    norm = {"mean": run.norm["mean"].tolist(), "std": run.norm["std"].tolist()}
    record = dict(cfg.to_dict(), loader=loader.to_dict(), norm=norm,
                  majority_class=run.majority)
    monitor = NvmlMonitor.start_if_available() if device.type == "cuda" else None
    run.model.train()
    try:
        _Loop(cfg, data, run, device, ckpt, record, progress, ranks).run_epochs()
    finally:
        data.stream.close()
        util = monitor.stop() if monitor is not None else ()
    result = _finish(cfg, data, run, device, ckpt.with_name("model.pt") if ranks.main else None,
                     resumed_from, util, loader)
    result.content_hash = content
    return result


def _finish(cfg: TrainConfig, data: _Data, run: _Run, device: torch.device,
            model_path: Path | None, resumed_from: int, util: tuple[int, ...],
            loader: LoaderConfig) -> TrainResult:
    """Save the model beside its checkpoint (rank 0: `model_path`); the result, scored
    against the majority class."""
    c, last = run.counters, run.rows[-1]
    if model_path is not None:
        _save(dict(spec=run.model.spec.to_dict(), state_dict=run.model.state_dict(),
                   norm=run.norm, classes=data.classes, ignore_index=data.ignore,
                   dataset=cfg.dataset, loader_config=cfg.loader_config, run=run.run,
                   step=c["step"], miou=last["miou"], majority_class=run.majority), model_path)
    baseline = ConfusionMatrix(data.num_classes, data.ignore)
    baseline.update(torch.full_like(data.val_y, run.majority), data.val_y)
    return TrainResult(
        run=run.run, dataset=cfg.dataset, loader_config=cfg.loader_config, device=str(device),
        steps=c["step"], samples_seen=c["samples"], seconds=c["seconds"],
        miou=last["miou"], per_class_iou=last["per_class_iou"],
        baseline_miou=baseline.miou(), baseline_per_class_iou=per_class_iou(baseline, data.classes),
        samples_per_s=last["samples_per_s"] or 0.0, data_wait=last["data_wait"] or 0.0,
        startup_s=c["startup"] or 0.0, val_patches=len(data.val_x), rows=run.rows,
        model_path=model_path, resumed_from=resumed_from,
        gpu_util=(sum(util) / len(util)) if util else None, loader=loader.to_dict(),
    )


def train_and_record(cfg: TrainConfig, settings: Settings | None = None, *,
                     store: ModelStore | None = None,
                     progress: ProgressFn | None = None) -> TrainResult:
    """Train, put the model in the store, and write one training_runs row per evaluation."""
    from ocog_lib import results

    settings = settings or Settings.from_env()
    store = store or model_store(settings=settings)
    result = train(cfg, settings, progress=progress)
    key = f"{cfg.dataset}/{cfg.loader_config}/{result.run}.pt"
    result.model_uri = store.save(result.model_path, key)
    for row in result.rows:
        row["config"] = dict(row["config"], model_uri=result.model_uri)
        row["content_hash"] = result.content_hash
    results.write_rows(settings.results_db, "training_runs", result.rows,
                       replace_where={"run": result.run})
    return result


def _load_checkpoint(path: Path, cfg: TrainConfig) -> dict | None:
    """The checkpoint to continue from: same learning settings, budget not yet spent."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as exc:
        raise InputError(path, f"unreadable checkpoint ({exc}); delete it to start over") from exc
    if state.get("key") != cfg.learning_key():
        return None
    c = state["counters"]
    if (cfg.iterations is not None and c["step"] >= cfg.iterations) or (
        cfg.max_time is not None and c["seconds"] >= cfg.max_time
    ):
        return None
    return state
