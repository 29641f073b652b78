"""Training the codec and its hash head in stages, on patches streamed by the engine.

Each optimizer step reads one engine batch of B windows of the random sampler over the
training rows of every raster (`SpatialSplit`, as `embed` and `train` split; windows
redrawn every epoch), normalised per band with statistics of training windows (kept in
the checkpoint and the model file), flipped and turned at random. The stage of a step
follows the share of the budget used so far (`config`): 1 reconstruction, 2 rate +
distortion, 3 hashing on the frozen codec's rounded latents with each patch's label
(its mask's majority class; labels do not change under flips and turns), `hash_batches`
engine batches a step (each bit's balance is a batch mean: 32 patches estimate it too
noisily to hold bits near 50%). The learning rate decays (cosine, to 5%) within each
stage, except the hash losses' learned log-variances', which keep learning their terms'
scale (with a decaying rate they lagged and the balance term stayed underweighted); a
checkpoint closes every stage. The entropy model learns at its own, 10x higher rate
(`density_lr`): at the transforms' rate its CDFs stayed near their initial width, so the
rate stayed near 2.5 bpp whatever lmbda (sample, 2000 CPU steps, lmbda 128, 2026-12-04:
1.62 bpp at 43.0 dB with one rate, 0.41 bpp at 42.4 dB with 1e-2 for the CDFs).

The run follows `embed.train`'s conventions: the device picked once (CUDA when present,
AMP for the transforms there, the entropy model in float32), a checkpoint written
atomically every `checkpoint_every` steps and at the end, and a second call with the same
config and data (the model id) and an unspent budget continuing from it on the same data
order and noise; a spent one returns the stored model without training.
"""

from __future__ import annotations

import math
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ocog_lib.compress.codec import Codec, CodecSpec, build_codec
from ocog_lib.compress.config import CompressConfig, model_id
from ocog_lib.compress.entropy import CodingTables
from ocog_lib.compress.hashing import HashHead, HashSpec, hash_loss
from ocog_lib.embed.infer import patch_labels
from ocog_lib.embed.train import (
    DatasetFiles,
    augment,
    budget_spent,
    budget_used,
    dataset_files,
    initial_norm,
    load_checkpoint,
    models_root,
    normalised,
    save_atomic,
)
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings
from ocog_lib.stream.config import StreamConfig
from ocog_lib.stream.dataset import CogStream
from ocog_lib.stream.device import autocast, pick_device
from ocog_lib.stream.samplers import SamplerConfig
from ocog_lib.stream.split import SpatialSplit

ProgressFn = Callable[[dict], None]
_UNREADABLE = (OSError, RuntimeError, EOFError, pickle.UnpicklingError)
STAGES = {1: "reconstruction", 2: "rate_distortion", 3: "hashing"}


@dataclass(frozen=True)
class CompressResult:
    model_id: str  # the run's id: config and data
    codec_id: str  # the weights' id, as every bitstream of this codec names it
    dataset: str
    variant: str
    device: str
    steps: int
    stage_steps: tuple[int, int, int]  # steps of reconstruction, rate-distortion, hashing
    patches_seen: int
    seconds: float  # training time, checkpoints included, over every call of this model
    patches_per_s: float
    data_wait: float  # share of training time spent waiting for batches
    val_patches: int
    model_path: Path
    checkpoint_path: Path
    resumed_from: int  # the step this call started at
    trained: bool  # False: the budget was already spent, the stored model is returned
    losses: tuple[tuple[int, int, float], ...]  # (step, stage, mean loss since the last)


@dataclass(frozen=True)
class LoadedCodec:
    codec: Codec
    head: HashHead
    meta: dict  # norm, config, dataset, variant, role, patch_size, fingerprint, model_id


def model_path(settings: Settings, dataset: str, mid: str) -> Path:
    """<models>/compress/<dataset>/<id>.pt, beside the encoders' `embed/`."""
    return models_root(settings).parent / "compress" / dataset / f"{mid}.pt"


def checkpoint_path(settings: Settings, dataset: str, mid: str) -> Path:
    return settings.data_dir / "compress" / dataset / mid / "checkpoint.pt"


def new_models(cfg: CompressConfig, bands: int) -> tuple[Codec, HashHead]:
    """The codec and head a run starts from (seeded): also what 'at initialisation' means."""
    torch.manual_seed(cfg.seed)
    codec = Codec(CodecSpec(bands, cfg.channels, cfg.latents))
    head = HashHead(HashSpec(cfg.latents, cfg.hash_bits, cfg.hash_width, cfg.classes))
    return codec, head


def load_codec(path: str | Path, device: str | torch.device = "cpu") -> LoadedCodec:
    """A saved codec (with its coding tables) and hash head, in eval mode."""
    try:
        saved = torch.load(Path(path), map_location=device, weights_only=False)
        codec = build_codec(saved["codec_spec"])
        codec.load_state_dict(saved["codec"])
        head = HashHead(HashSpec(**saved["head_spec"]))
        head.load_state_dict(saved["head"])
        codec.tables = CodingTables.from_dict(saved["tables"])
    except _UNREADABLE + (KeyError, TypeError) as exc:
        raise InputError(path, f"not an ocog codec file ({exc})") from exc
    meta = {k: v for k, v in saved.items() if k not in ("codec", "head", "tables")}
    return LoadedCodec(codec.to(device).eval(), head.to(device).eval(), meta)


# ---- budget and stages -------------------------------------------------------------------


def stage_of(cfg: CompressConfig, used: float) -> tuple[int, float]:
    """(stage, progress within it in [0, 1]) at this share of the budget."""
    bounds = [(1, 0.0, cfg.recon_share), (2, cfg.recon_share, cfg.recon_share + cfg.rate_share),
              (3, cfg.recon_share + cfg.rate_share, 1.0)]  # fmt: skip
    if cfg.hash_share == 0:
        bounds = bounds[:2]
    for stage, lo, hi in bounds:
        if used < hi or stage == bounds[-1][0]:
            return stage, min(max((used - lo) / max(hi - lo, 1e-12), 0.0), 1.0)
    raise AssertionError("unreachable")


def epoch_windows(grids: list, cfg: CompressConfig, epoch: int) -> np.ndarray:
    """One epoch's training windows (random sampler above the split), seeded by epoch."""
    split = SpatialSplit(cfg.val_fraction, cfg.patch_size)
    sc = SamplerConfig("random", cfg.patch_size, cfg.batches_per_epoch * cfg.batch_size,
                       cfg.seed * 1_000_003 + epoch)  # fmt: skip
    return split.train_windows(grids, sc)


def _noise(shape: tuple[int, ...], step: int, seed: int) -> torch.Tensor:
    """The step's quantisation noise, seeded by step (a resumed run draws the same)."""
    gen = torch.Generator().manual_seed(seed * 104_729 + step)
    return torch.rand(shape, generator=gen) - 0.5


# ---- state, steps, checkpoints -----------------------------------------------------------


@dataclass
class _State:
    """What a checkpoint holds."""

    codec: Codec
    head: HashHead
    opt: torch.optim.Optimizer  # the codec's (stages 1 and 2)
    hash_opt: torch.optim.Optimizer  # the head's and its loss weights' (stage 3)
    scaler: torch.amp.GradScaler
    norm: dict
    counters: dict
    losses: list


def _start(cfg: CompressConfig, files: DatasetFiles, stream: CogStream, device: torch.device,
           saved: dict | None) -> _State:
    """Codec, head and optimizers: from the checkpoint, or new with fresh band statistics."""
    codec, head = new_models(cfg, len(stream.bands))
    codec, head = codec.to(device), head.to(device)
    named = list(codec.named_parameters())
    density = [p for n, p in named if n.startswith("density.")]
    transforms = [p for n, p in named if not n.startswith("density.")]
    opt = torch.optim.Adam([{"params": transforms, "lr": cfg.lr, "base_lr": cfg.lr},
                            {"params": density, "lr": cfg.density_lr,
                             "base_lr": cfg.density_lr}])  # fmt: skip
    weights = [p for n, p in head.named_parameters() if n != "log_vars"]
    hash_opt = torch.optim.Adam([{"params": weights, "decay": True},
                                 {"params": [head.log_vars], "decay": False}],
                                lr=cfg.hash_lr)  # fmt: skip
    fp16 = device.type == "cuda" and cfg.amp and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler(device.type, enabled=fp16)
    if saved is not None:
        codec.load_state_dict(saved["codec"])
        head.load_state_dict(saved["head"])
        opt.load_state_dict(saved["optimizer"])
        hash_opt.load_state_dict(saved["hash_optimizer"])
        scaler.load_state_dict(saved["scaler"])
        return _State(codec, head, opt, hash_opt, scaler, saved["norm"], saved["counters"],
                      saved["losses"])  # fmt: skip
    counters = dict(step=0, epoch=0, in_epoch=0, patches=0, seconds=0.0, wait=0.0,
                    loss_sum=0.0, loss_n=0, stage=1, stage_steps=[0, 0, 0])  # fmt: skip
    return _State(codec, head, opt, hash_opt, scaler, initial_norm(files, stream.grids, cfg),
                  counters, [])  # fmt: skip


def codec_loss(codec: Codec, x: torch.Tensor, stage: int, lmbda: float, noise: torch.Tensor,
               device: torch.device, amp: bool) -> torch.Tensor:  # fmt: skip
    """Stage 1: MSE + bpp of the detached latents (the density fits them, the transforms
    only reconstruct); stage 2: bpp + lmbda x MSE."""
    with autocast(device, amp):
        x_hat, y_tilde = codec(x, noise)
    y = y_tilde.float()
    bpp = codec.density.bits(y.detach() if stage == 1 else y) / (len(x) * x.shape[2] * x.shape[3])
    mse = F.mse_loss(x_hat.float(), x)
    return mse + bpp if stage == 1 else bpp + lmbda * mse


def _joined(batches: list[dict]) -> dict:
    if len(batches) == 1:
        return batches[0]
    return {k: torch.cat([b[k] for b in batches]) for k in ("image", "mask") if k in batches[0]}


def _lr(base: float, progress: float) -> float:
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


class _Loop:
    """Optimizer steps over epochs of windows until the first budget is spent; a
    checkpoint every `checkpoint_every` steps, at each change of stage and at the end."""

    def __init__(self, cfg: CompressConfig, stream: CogStream, state: _State,
                 device: torch.device, ckpt: Path, mid: str, progress: ProgressFn | None):
        self.cfg, self.stream, self.s, self.device = cfg, stream, state, device
        self.ckpt, self.mid, self.progress = ckpt, mid, progress
        self.c = state.counters
        self.t0, self.base = time.perf_counter(), self.c["seconds"]
        self.loss_acc = torch.zeros((), device=device)  # summed on the device: no sync a step

    def run(self) -> None:
        while not budget_spent(self.cfg, self.c):
            if self.epoch():
                self.c["epoch"] += 1
                self.c["in_epoch"] = 0
        if self.c["loss_n"] or not self.s.losses:
            self.checkpoint()

    def epoch(self) -> bool:
        """The rest of the current epoch's batches; True when they ran out."""
        cfg, c = self.cfg, self.c
        windows = epoch_windows(self.stream.grids, cfg, c["epoch"])
        it = iter(self.stream.loader(windows[c["in_epoch"] * cfg.batch_size :]))
        pending: list[dict] = []  # stage 3 steps on `hash_batches` engine batches at once
        try:
            while not budget_spent(cfg, c):
                stage = stage_of(cfg, budget_used(cfg, c))[0]
                if stage != c["stage"]:
                    self.checkpoint()  # between steps, so the loss means stay per stage
                    c["stage"] = stage
                t = time.perf_counter()
                batch = next(it, None)
                c["wait"] += time.perf_counter() - t
                if batch is None:
                    return True
                c["in_epoch"] += 1
                pending.append(batch)
                if stage < 3 or len(pending) == cfg.hash_batches:
                    self.step(_joined(pending), stage)
                    pending = []
            return False
        finally:
            if hasattr(it, "close"):
                it.close()

    def step(self, batch: dict, stage: int) -> None:
        cfg, c, s = self.cfg, self.c, self.s
        progress = stage_of(cfg, budget_used(cfg, c))[1]
        x = normalised(batch["image"].to(self.device, non_blocking=True), s.norm)
        if cfg.augment:
            x = augment(x, c["step"], cfg.seed)
        if stage < 3:
            loss = self.codec_step(x, stage, progress)
        else:
            labels = torch.from_numpy(patch_labels(batch["mask"], len(x))).to(self.device)
            loss = self.hash_step(x, labels, progress)
        self.loss_acc += loss.detach().float()
        c["step"] += 1
        c["stage_steps"][stage - 1] += 1
        c["patches"] += len(x)
        c["loss_n"] += 1
        c["seconds"] = self.base + time.perf_counter() - self.t0
        if c["step"] % cfg.checkpoint_every == 0 and not budget_spent(cfg, c):
            self.checkpoint()
        if self.progress:
            self.progress(dict(event="step", step=c["step"], stage=stage, seconds=c["seconds"]))

    def codec_step(self, x: torch.Tensor, stage: int, progress: float) -> torch.Tensor:
        cfg, s = self.cfg, self.s
        s.codec.train()
        shape = (len(x), cfg.latents, x.shape[2] // 8, x.shape[3] // 8)
        noise = _noise(shape, self.c["step"], cfg.seed)
        loss = codec_loss(s.codec, x, stage, cfg.lmbda, noise, self.device, cfg.amp)
        for group in s.opt.param_groups:  # the transforms' and the entropy model's
            group["lr"] = _lr(group["base_lr"], progress)
        s.opt.zero_grad(set_to_none=True)
        s.scaler.scale(loss).backward()
        s.scaler.unscale_(s.opt)
        torch.nn.utils.clip_grad_norm_(s.codec.parameters(), cfg.clip_norm)
        s.scaler.step(s.opt)
        s.scaler.update()
        return loss

    def hash_step(self, x: torch.Tensor, labels: torch.Tensor, progress: float) -> torch.Tensor:
        s = self.s
        s.codec.eval()
        with torch.no_grad():
            y = s.codec.encode_latents(x)
        s.head.train()
        u, logits = s.head(y)
        loss = hash_loss(s.head, u, logits, labels).total
        for group in s.hash_opt.param_groups:  # the loss weights keep learning their scale
            group["lr"] = _lr(self.cfg.hash_lr, progress) if group["decay"] else self.cfg.hash_lr
        s.hash_opt.zero_grad(set_to_none=True)
        loss.backward()
        s.hash_opt.step()
        return loss

    def checkpoint(self) -> None:
        c, s = self.c, self.s
        c["loss_sum"] += float(self.loss_acc)
        self.loss_acc.zero_()
        if c["loss_n"]:
            s.losses.append((c["step"], c["stage"], c["loss_sum"] / c["loss_n"]))
        c["loss_sum"], c["loss_n"] = 0.0, 0
        save_atomic(dict(codec=s.codec.state_dict(), head=s.head.state_dict(),
                   optimizer=s.opt.state_dict(), hash_optimizer=s.hash_opt.state_dict(),
                   scaler=s.scaler.state_dict(), norm=s.norm, counters=dict(c),
                   losses=s.losses, model_id=self.mid, config=self.cfg.to_dict()),
              self.ckpt)  # fmt: skip
        c["seconds"] = self.base + time.perf_counter() - self.t0
        if self.progress:
            self.progress(dict(event="checkpoint", step=c["step"], stage=c["stage"],
                               loss=s.losses[-1][2] if s.losses else None))  # fmt: skip


# ---- the run -----------------------------------------------------------------------------


def train_codec(cfg: CompressConfig, settings: Settings | None = None, *,
                progress: ProgressFn | None = None) -> CompressResult:
    """Train (or continue, or return) the codec and hash head of this config and data;
    save them under `model_path`."""
    settings = settings or Settings.from_env()
    files = dataset_files(cfg.dataset, cfg.variant, settings, cfg.role)
    if cfg.hash_share > 0 and not files.masks:
        raise InputError(f"{cfg.dataset}/{cfg.variant}",
                         "has no masks: the hash head learns from labels (or set "
                         "recon_share + rate_share to 1)")  # fmt: skip
    mid = model_id(cfg, files.fingerprint)
    device = pick_device(cfg.device)
    ckpt = checkpoint_path(settings, cfg.dataset, mid)
    scfg = StreamConfig(sampler="random", patch_size=cfg.patch_size, seed=cfg.seed,
                        batch_size=cfg.batch_size, dtype="float32", drop_last=True,
                        workers=cfg.workers, pin_memory=device.type == "cuda")  # fmt: skip
    masks = files.masks if cfg.hash_share > 0 else None
    stream = CogStream(files.images, masks, scfg, windows=np.empty((0, 3), dtype=np.int64))
    try:
        state = _start(cfg, files, stream, device,
                       load_checkpoint(ckpt, mid) if cfg.resume else None)
        resumed_from = state.counters["step"]
        trained = not budget_spent(cfg, state.counters)
        if trained:
            _Loop(cfg, stream, state, device, ckpt, mid, progress).run()
        val = SpatialSplit(cfg.val_fraction, cfg.patch_size).val_windows(
            stream.grids, cfg.max_val_patches)
    finally:
        stream.close()
    return _finish(cfg, files, mid, state, device, ckpt, resumed_from, trained, len(val),
                   settings)  # fmt: skip


def _finish(cfg: CompressConfig, files: DatasetFiles, mid: str, s: _State,
            device: torch.device, ckpt: Path, resumed_from: int, trained: bool,
            val_patches: int, settings: Settings) -> CompressResult:  # fmt: skip
    """Write the model file (codec, coding tables, head, what quality needs) and the result."""
    c = s.counters
    path = model_path(settings, cfg.dataset, mid)
    tables = s.codec.coding_tables()
    if trained or not path.exists():
        save_atomic(dict(codec_spec=s.codec.spec.to_dict(), codec=s.codec.state_dict(),
                   head_spec=s.head.spec.to_dict(), head=s.head.state_dict(),
                   tables=tables.to_dict(), codec_id=tables.key, norm=s.norm, model_id=mid,
                   config=cfg.to_dict(), dataset=cfg.dataset, variant=cfg.variant,
                   role=cfg.role, patch_size=cfg.patch_size, fingerprint=files.fingerprint,
                   steps=c["step"], seconds=c["seconds"]),
              path)  # fmt: skip
    return CompressResult(
        model_id=mid, codec_id=tables.key, dataset=cfg.dataset, variant=cfg.variant,
        device=str(device), steps=c["step"], stage_steps=tuple(c["stage_steps"]),
        patches_seen=c["patches"], seconds=c["seconds"],
        patches_per_s=c["patches"] / c["seconds"] if c["seconds"] else 0.0,
        data_wait=c["wait"] / c["seconds"] if c["seconds"] else 0.0, val_patches=val_patches,
        model_path=path, checkpoint_path=ckpt, resumed_from=resumed_from, trained=trained,
        losses=tuple((int(a), int(b), float(v)) for a, b, v in s.losses),
    )
