"""Training and evaluation: a U-Net fed by the streaming engine, scored on held-out patches.

The split is spatial, per raster: the bottom `val_fraction` of each image's rows (rounded
to whole patches) is held out; training windows lie wholly above it, validation patches
are the grid sampler's windows wholly inside it, read once and kept in memory. So the
scores come from pixels the model never saw, on every dataset, however many files it has.

One loop serves the asset, the CLI and the tests; `train_and_record` adds the model store
and the DuckDB rows. A checkpoint is written (atomically) at every evaluation; a run with
the same settings and an unspent budget continues from it, on the same data order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ocog_lib.atomic import atomic_path
from ocog_lib.data.manifest import DatasetManifest
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings
from ocog_lib.stream.dataset import CogStream, StreamConfig, worker_loader
from ocog_lib.stream.samplers import RasterGrid, SamplerConfig, sample_windows
from ocog_lib.train.configs import LoaderConfig, loader_files, resolve_loader_config
from ocog_lib.train.metrics import ConfusionMatrix, per_class_iou
from ocog_lib.train.model import UNet, UNetSpec, build_unet
from ocog_lib.train.store import ModelStore, model_store

# fields that do not change what is learned: a run may continue under other values
_BUDGET_FIELDS = ("max_time", "iterations", "resume", "device", "eval_every")


@dataclass(frozen=True)
class TrainConfig:
    dataset: str = "sample"
    loader_config: str = "local-optimal"
    max_time: float | None = 600.0  # seconds of training (evaluation included)
    iterations: int | None = None  # optimizer steps; the first budget reached ends the run
    patch_size: int = 128
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    width: int = 16  # U-Net channels of the first block
    depth: int = 3
    eval_every: int = 100  # steps between evaluations (and checkpoints)
    val_fraction: float = 0.25
    max_val_patches: int = 256
    norm_batches: int = 4  # training batches sampled for per-band mean/std
    batches_per_epoch: int = 64  # windows are redrawn (new seed) every epoch
    role: str = "scene"  # manifest items to train on; all items where none has this role
    seed: int = 0
    device: str = "auto"  # "auto": cuda when present, else cpu
    amp: bool = True  # mixed precision on CUDA only
    resume: bool = True
    workers: int | None = None  # override the loader config's DataLoader processes

    def __post_init__(self) -> None:
        if self.max_time is None and self.iterations is None:
            raise InputError("training budget", "give max_time, iterations or both")
        if self.max_time is not None and self.max_time <= 0:
            raise InputError(f"max_time {self.max_time}", "must be positive")
        if self.iterations is not None and self.iterations < 1:
            raise InputError(f"iterations {self.iterations}", "must be at least 1")
        if self.patch_size % 2**self.depth:
            raise InputError(f"patch_size {self.patch_size}",
                             f"must be a multiple of {2**self.depth} (2**depth)")
        if not 0 < self.val_fraction < 1:
            raise InputError(f"val_fraction {self.val_fraction}", "must be between 0 and 1")
        for name in ("batch_size", "eval_every", "norm_batches", "batches_per_epoch",
                     "max_val_patches", "width"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} {getattr(self, name)}", "must be at least 1")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def learning_key(self) -> str:
        """Hash of everything that shapes the model (budgets and device left out)."""
        d = {k: v for k, v in self.to_dict().items() if k not in _BUDGET_FIELDS}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


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


# ---- the split ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SpatialSplit:
    """Rows above `split_row` train, rows below validate, per raster."""

    val_fraction: float
    patch: int

    def split_row(self, g: RasterGrid, index: int = 0) -> int:
        p = self.patch
        if g.height < 2 * p or g.width < p:
            raise InputError(f"raster #{index} ({g.height}x{g.width})",
                             f"too small to hold a training and a validation patch of {p}")
        row = round(g.height * (1 - self.val_fraction) / p) * p
        return min(max(row, p), g.height - p)

    def train_windows(self, grids: list[RasterGrid], cfg: SamplerConfig) -> np.ndarray:
        """`cfg.length` windows of the sampler, keeping those wholly above the split."""
        limits = np.array([self.split_row(g, i) for i, g in enumerate(grids)])
        share = sum(lim * g.width for lim, g in zip(limits, grids, strict=True)) / sum(
            g.height * g.width for g in grids
        )
        draw = math.ceil(cfg.length / max(share, 1e-3) * 1.25) + 8
        for _ in range(8):
            w = sample_windows(grids, dataclasses.replace(cfg, length=draw))
            keep = w[w[:, 1] + self.patch <= limits[w[:, 0]]]
            if len(keep) >= cfg.length:
                return keep[: cfg.length]
            draw *= 2
        raise InputError("training windows", f"the sampler gave {len(keep)} of {cfg.length} "
                         "above the validation split; lower val_fraction")

    def val_windows(self, grids: list[RasterGrid], max_patches: int) -> np.ndarray:
        """The grid sampler's windows wholly below the split; evenly thinned to a cap."""
        limits = np.array([self.split_row(g, i) for i, g in enumerate(grids)])
        w = sample_windows(grids, SamplerConfig(kind="grid", patch_size=self.patch))
        w = w[w[:, 1] >= limits[w[:, 0]]]
        if len(w) > max_patches:
            w = w[np.unique(np.linspace(0, len(w) - 1, max_patches).round().astype(int))]
        return w


class WindowStream(CogStream):
    """A CogStream over windows chosen by the caller, kept when handed to DataLoader workers."""

    def __init__(self, images, masks, config: StreamConfig, windows: np.ndarray, *,
                 rasters=None):
        super().__init__(images, masks, dataclasses.replace(config, length=1), rasters=rasters)
        self.windows = np.ascontiguousarray(windows, dtype=self.windows.dtype)

    def loader(self):
        if self.cfg.workers <= 0:
            return self
        pin = self.cfg.pin_memory if self.cfg.pin_memory is not None else False
        view = WindowStream(self.images, self.masks,
                            dataclasses.replace(self.cfg, pin_memory=False), self.windows,
                            rasters=self.rasters)
        return worker_loader(view, pin)  # ocog errors keep their type across the workers


# ---- helpers -----------------------------------------------------------------------------


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise InputError(f"device {name!r}", str(exc)) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r}", "CUDA is not available on this machine")
    return dev


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
    with torch.no_grad(), _autocast(device, amp):
        for i in range(0, len(images), batch_size):
            x = (images[i : i + batch_size].to(device, non_blocking=True) - mean) / std
            pred = model(x).argmax(1)
            cm.update(pred.cpu(), masks[i : i + batch_size])
    model.train(was_training)
    return cm


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast(device.type, enabled=False)


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
    with loader_files(loader, cfg.dataset, settings, cfg.role) as (images, masks):
        return _train(cfg, settings, loader, images, masks, progress)


def _train(cfg: TrainConfig, settings: Settings, loader: LoaderConfig, images: list[str],
           masks: list[str], progress: ProgressFn | None) -> TrainResult:
    from ocog_lib.bench.consumer import _NvmlMonitor

    manifest = DatasetManifest.load(settings.variant_dir(cfg.dataset, loader.variant))
    classes, ignore = manifest.classes, manifest.ignore_index
    num_classes = max(classes) + 1
    device = pick_device(cfg.device)
    on_gpu = device.type == "cuda"
    extra = {} if cfg.workers is None else {"workers": cfg.workers}
    scfg = loader.stream_config(patch_size=cfg.patch_size, batch_size=cfg.batch_size,
                                length=cfg.batches_per_epoch * cfg.batch_size, seed=cfg.seed,
                                dtype="float32", drop_last=True, pin_memory=on_gpu, **extra)
    split = SpatialSplit(cfg.val_fraction, cfg.patch_size)
    base = CogStream(images, masks, dataclasses.replace(scfg, length=1, workers=0))
    grids, rasters = base.grids, base.rasters
    # tile reuse (auto) and the shuffle group decided once, for every epoch
    scfg = dataclasses.replace(base.cfg, length=scfg.length, workers=scfg.workers)
    bands = len(base.bands)

    def epoch_windows(epoch: int) -> np.ndarray:
        seed = cfg.seed * 1_000_003 + epoch
        return split.train_windows(grids, dataclasses.replace(scfg.sampler_config(), seed=seed))

    val_cfg = dataclasses.replace(scfg, sampler="grid", workers=0, pin_memory=False,
                                  drop_last=False)
    val_stream = WindowStream(images, masks, val_cfg,
                              split.val_windows(grids, cfg.max_val_patches), rasters=rasters)
    val_x, val_y = _read_all(val_stream)
    val_stream.close()

    ckpt_path = checkpoint_path(settings, cfg.dataset, cfg.loader_config)
    state = _load_checkpoint(ckpt_path, cfg) if cfg.resume else None
    torch.manual_seed(cfg.seed)
    model = UNet(UNetSpec(bands, num_classes, cfg.width, cfg.depth)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    use_scaler = (on_gpu and cfg.amp and not torch.cuda.is_bf16_supported())
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        norm, majority = state["norm"], state["majority"]
        counters = state["counters"]
        rows: list[dict] = state["rows"]
        run = state["run"]
    else:
        ns = WindowStream(images, masks, dataclasses.replace(scfg, workers=0, pin_memory=False),
                          split.train_windows(grids, dataclasses.replace(
                              scfg.sampler_config(), seed=cfg.seed + 7919,
                              length=cfg.norm_batches * cfg.batch_size)), rasters=rasters)
        nx, ny = _read_all(ns)
        ns.close()
        mean, std = _norm_stats(nx)
        norm = {"mean": mean, "std": std}
        majority = _majority_class(ny, num_classes)
        counters = dict(step=0, epoch=0, in_epoch=0, samples=0, seconds=0.0, wait=0.0,
                        loop=0.0, startup=None, loss_sum=0.0, loss_n=0)
        rows = []
        run = uuid.uuid4().hex[:12]
    resumed_from = counters["step"]

    baseline_cm = ConfusionMatrix(num_classes, ignore)
    baseline_cm.update(torch.full_like(val_y, majority), val_y)
    crit = torch.nn.CrossEntropyLoss(ignore_index=ignore)
    mean_d = norm["mean"].to(device)[None, :, None, None]
    std_d = norm["std"].to(device)[None, :, None, None]
    record = dict(cfg.to_dict(), loader=loader.to_dict(), norm={
        "mean": norm["mean"].tolist(), "std": norm["std"].tolist()}, majority_class=majority)

    def budget_used() -> float:
        c, used = counters, 0.0
        if cfg.iterations is not None:
            used = max(used, c["step"] / cfg.iterations)
        if cfg.max_time is not None:
            used = max(used, c["seconds"] / cfg.max_time)
        return min(used, 1.0)

    def set_lr() -> None:
        # cosine decay over the budget to 5% of lr: the last evaluations settle
        frac = 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * budget_used()))
        for group in opt.param_groups:
            group["lr"] = cfg.lr * frac

    def spent() -> bool:
        c = counters
        return ((cfg.iterations is not None and c["step"] >= cfg.iterations)
                or (cfg.max_time is not None and c["seconds"] >= cfg.max_time))

    def do_eval() -> None:
        cm = evaluate(model, val_x, val_y, norm, num_classes, ignore, device,
                      batch_size=cfg.batch_size, amp=cfg.amp)
        c = counters
        loss = c["loss_sum"] / c["loss_n"] if c["loss_n"] else None
        rows.append(dict(
            run=run, dataset=cfg.dataset, loader_config=cfg.loader_config, step=c["step"],
            seconds=round(c["seconds"], 4), samples_seen=c["samples"], loss=loss,
            miou=cm.miou(), per_class_iou=per_class_iou(cm, classes),
            data_wait=c["wait"] / c["loop"] if c["loop"] else None,
            samples_per_s=c["samples"] / c["loop"] if c["loop"] else None,
            device=str(device), config=record,
        ))
        c["loss_sum"], c["loss_n"] = 0.0, 0
        _save(dict(model=model.state_dict(), optimizer=opt.state_dict(),
                   scaler=scaler.state_dict(), norm=norm, majority=majority,
                   counters=dict(c), rows=rows, run=run, key=cfg.learning_key()), ckpt_path)
        if progress:
            progress(dict(event="eval", **{k: rows[-1][k] for k in ("step", "miou", "loss")}))

    monitor = _NvmlMonitor.start_if_available() if on_gpu else None
    stream = WindowStream(images, masks, scfg, epoch_windows(counters["epoch"]), rasters=rasters)
    model.train()
    try:
        if not rows:
            do_eval()
        t_seg = time.perf_counter()
        seconds_at_seg = counters["seconds"]
        loss_acc = torch.zeros((), device=device)
        n_acc = 0
        while not spent():
            c = counters
            stream.windows = epoch_windows(c["epoch"])[c["in_epoch"] * cfg.batch_size:]
            it = iter(stream.loader())
            first = c["startup"] is None
            while not spent():
                t0 = time.perf_counter()
                batch = next(it, None)
                t1 = time.perf_counter()
                if batch is None:
                    break
                c["in_epoch"] += 1
                y = batch["mask"].to(device, non_blocking=True).long()
                if not bool((y != ignore).any()):
                    continue  # nothing labelled: a cross-entropy of nothing is NaN
                x = (batch["image"].to(device, non_blocking=True) - mean_d) / std_d
                with _autocast(device, cfg.amp):
                    loss = crit(model(x), y)
                set_lr()
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                loss_acc += loss.detach().float()
                n_acc += 1
                t2 = time.perf_counter()
                if first:
                    c["startup"], first = t1 - t0, False
                else:
                    c["wait"] += t1 - t0
                    c["loop"] += t2 - t0
                c["step"] += 1
                c["samples"] += len(y)
                c["seconds"] = seconds_at_seg + time.perf_counter() - t_seg
                if c["step"] % cfg.eval_every == 0 or spent():
                    c["loss_sum"] += float(loss_acc)
                    c["loss_n"] += n_acc
                    loss_acc.zero_()
                    n_acc = 0
                    do_eval()
                    c["seconds"] = seconds_at_seg + time.perf_counter() - t_seg
                if progress:
                    progress(dict(event="step", step=c["step"], seconds=c["seconds"]))
            else:
                break
            if hasattr(it, "close"):
                it.close()
            c["epoch"] += 1
            c["in_epoch"] = 0
    finally:
        stream.close()
        util = monitor.stop() if monitor is not None else ()

    model_path = ckpt_path.with_name("model.pt")
    last = rows[-1]
    _save(dict(spec=model.spec.to_dict(), state_dict=model.state_dict(), norm=norm,
               classes=classes, ignore_index=ignore, dataset=cfg.dataset,
               loader_config=cfg.loader_config, run=run, step=counters["step"],
               miou=last["miou"], majority_class=majority), model_path)
    return TrainResult(
        run=run, dataset=cfg.dataset, loader_config=cfg.loader_config, device=str(device),
        steps=counters["step"], samples_seen=counters["samples"], seconds=counters["seconds"],
        miou=last["miou"], per_class_iou=last["per_class_iou"],
        baseline_miou=baseline_cm.miou(),
        baseline_per_class_iou=per_class_iou(baseline_cm, classes),
        samples_per_s=last["samples_per_s"] or 0.0, data_wait=last["data_wait"] or 0.0,
        startup_s=counters["startup"] or 0.0, val_patches=len(val_x), rows=rows,
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
