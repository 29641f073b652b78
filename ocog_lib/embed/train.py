"""Training the patch encoder on triplets streamed by the engine, time-budgeted, resumable.

Each optimizer step reads one engine batch of 3B windows (`triplets.epoch_triplets`: B
anchors, their B spatial neighbours, B distant patches) over the training rows of every
raster, normalised per band with statistics of training windows (kept in the checkpoint
and the model file), flipped and turned at random (orientation carries no meaning from
above). The objective pulls an anchor towards its neighbour and away from the rest:
`infonce` (default) scores each anchor against every positive and negative of the batch
(cross-entropy over cosine similarities / temperature, both directions), `triplet` is
VectorGeo's margin loss on cosine distance to its own negative. InfoNCE gets 2B - 1
negatives per anchor instead of one. Its temperature is high (0.5): most negatives are
the same surface elsewhere (water is half the sample), and a low temperature pushes
hardest on exactly those, spreading one surface over the sphere; on the sample 0.5 kept
surfaces together better than 0.1 or 0.3.

The run follows `ocog_lib.train.loop`'s conventions (this layer may not import it): the
device picked once (cuda when present, AMP and pinned batches there), a checkpoint written
atomically every `checkpoint_every` steps and at the end, and a second call with the same
config and data (the model id) and an unspent budget continuing from it on the same data
order; a spent one returns the stored model without training.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from ocog_lib.atomic import atomic_path
from ocog_lib.data.locate import variant_folder
from ocog_lib.data.manifest import MANIFEST_NAME, DatasetManifest
from ocog_lib.embed.config import EmbedConfig, model_id
from ocog_lib.embed.model import Encoder, EncoderSpec, build_encoder
from ocog_lib.embed.triplets import epoch_triplets
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings
from ocog_lib.stream.config import StreamConfig
from ocog_lib.stream.dataset import CogStream
from ocog_lib.stream.device import autocast, pick_device
from ocog_lib.stream.samplers import SamplerConfig
from ocog_lib.stream.split import SpatialSplit

ProgressFn = Callable[[dict], None]
_UNREADABLE = (OSError, RuntimeError, EOFError, pickle.UnpicklingError)


class ModelSink(Protocol):
    """What `train_encoder` can put the model in: `ocog_lib.train.store`'s stores fit."""

    def save(self, local: Path, key: str) -> str: ...


@dataclass
class EncoderResult:
    model_id: str
    dataset: str
    variant: str
    device: str
    steps: int
    triplets_seen: int
    seconds: float  # training time, checkpoints included, over every call of this model
    loss: float | None  # mean loss of the last checkpoint interval
    triplets_per_s: float
    data_wait: float  # share of training time spent waiting for batches
    val_patches: int  # held-out windows (quality is measured on those with a label)
    model_path: Path
    model_uri: str
    checkpoint_path: Path
    resumed_from: int  # the step this call started at
    trained: bool  # False: the budget was already spent, the stored model is returned
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, mean loss)
    config: dict = field(default_factory=dict)


# ---- files, places, device ---------------------------------------------------------------


@dataclass(frozen=True)
class DatasetFiles:
    """A variant's files for one role, and a fingerprint of what they hold."""

    dataset: str
    variant: str
    images: list[str]
    masks: list[str]  # [] unless every image has a mask
    relpaths: list[str]  # each image's path under the variant folder (the `source`)
    fingerprint: str  # hash of the manifest and of every file's name and size


def dataset_files(dataset: str, variant: str, settings: Settings, role: str = "scene"
                  ) -> DatasetFiles:  # fmt: skip
    folder = variant_folder(dataset, variant, settings)
    manifest = DatasetManifest.load(folder)
    items = manifest.by_role(role) or manifest.items
    if not items:
        raise InputError(folder / MANIFEST_NAME, "lists no images")
    images = [str(manifest.image_path(i)) for i in items]
    masks = [str(manifest.mask_path(i)) for i in items if i.mask]
    masks = masks if len(masks) == len(images) else []
    h = hashlib.sha256((folder / MANIFEST_NAME).read_bytes())
    for p in images + masks:
        h.update(f"{Path(p).relative_to(folder)}:{Path(p).stat().st_size};".encode())
    rel = [str(Path(p).relative_to(folder)) for p in images]
    return DatasetFiles(dataset, variant, images, masks, rel, h.hexdigest()[:16])


def models_root(settings: Settings) -> Path:
    """Where training's models go ($OCOG_MODEL_STORE when it is a folder, else
    <data_dir>/models, as `ocog_lib.train.store`); encoders live under `embed/`."""
    uri = os.environ.get("OCOG_MODEL_STORE", "")
    root = Path(uri).resolve() if uri and "://" not in uri else settings.data_dir / "models"
    return root / "embed"


def model_key(dataset: str, mid: str) -> str:
    """The model's key in a model store (and its path under `models_root`'s parent)."""
    return f"embed/{dataset}/{mid}.pt"


def checkpoint_path(settings: Settings, dataset: str, mid: str) -> Path:
    return settings.data_dir / "embedding" / dataset / mid / "checkpoint.pt"


# ---- run conventions (compress.train follows them too) ----------------------------------


def save_atomic(obj: dict, path: Path) -> None:
    """torch.save under a temporary name, renamed into place: never a half checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def budget_used(cfg, c: dict) -> float:
    """Share of the budget (`cfg.budget_s`, and `cfg.steps` when set) the counters spent."""
    used = c["seconds"] / cfg.budget_s
    if cfg.steps is not None:
        used = max(used, c["step"] / cfg.steps)
    return min(used, 1.0)


def budget_spent(cfg, c: dict) -> bool:
    return budget_used(cfg, c) >= 1.0


def load_checkpoint(path: Path, mid: str) -> dict | None:
    """The checkpoint of model `mid` at `path`; None when absent or of another model."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except _UNREADABLE as exc:
        raise InputError(path, f"unreadable checkpoint ({exc}); delete it to start over") from exc
    return state if state.get("model_id") == mid else None


def initial_norm(files: DatasetFiles, grids: list, cfg) -> dict[str, torch.Tensor]:
    """Per-band mean/std of `cfg.norm_batches` batches of training windows (seeded)."""
    split = SpatialSplit(cfg.val_fraction, cfg.patch_size)
    sc = SamplerConfig("random", cfg.patch_size, cfg.norm_batches * cfg.batch_size,
                       cfg.seed + 7919)  # fmt: skip
    x, _ = read_patches(files.images, None, split.train_windows(grids, sc), cfg.patch_size)
    return norm_stats(x)


# ---- patches in memory -------------------------------------------------------------------


def read_patches(images: list[str], masks: list[str] | None, windows: np.ndarray, patch: int,
                 *, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor | None]:
    """float32 images (n, C, p, p) and uint8 masks (n, p, p) (None without masks) of
    `windows`, read by the engine in this process, in order."""
    cfg = StreamConfig(sampler="grid", patch_size=patch, batch_size=batch_size,
                       dtype="float32", pin_memory=False)  # fmt: skip
    stream = CogStream(images, masks or None, cfg, windows=windows)
    try:
        parts = [(b["image"].clone(), b["mask"].clone() if masks else None)
                 for b in stream.iter_batches()]  # fmt: skip
    finally:
        stream.close()
    if not parts:
        raise InputError("patches", "no windows to read")
    x = torch.cat([p[0] for p in parts])
    return x, (torch.cat([p[1] for p in parts]) if masks else None)


def norm_stats(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-band mean and std over patches (float64 sums for stability)."""
    x = images.to(torch.float64).transpose(0, 1).reshape(images.shape[1], -1)
    return {"mean": x.mean(1).float(), "std": torch.clamp(x.std(1), min=1e-6).float()}


def normalised(x: torch.Tensor, norm: dict) -> torch.Tensor:
    mean = norm["mean"].to(x.device)[None, :, None, None]
    std = norm["std"].to(x.device)[None, :, None, None]
    return (x - mean) / std


def load_encoder(path: str | Path, device: str | torch.device = "cpu") -> tuple[Encoder, dict]:
    """A saved encoder in eval mode and its metadata (norm, config, dataset, patch size)."""
    try:
        saved = torch.load(Path(path), map_location=device, weights_only=False)
        model = build_encoder(saved["spec"])
        model.load_state_dict(saved["state_dict"])
    except _UNREADABLE + (KeyError, TypeError) as exc:
        raise InputError(path, f"not an ocog encoder file ({exc})") from exc
    model.eval()
    return model.to(device), {k: v for k, v in saved.items() if k != "state_dict"}


# ---- learning ----------------------------------------------------------------------------


def augment(x: torch.Tensor, step: int, seed: int) -> torch.Tensor:
    """Each patch flipped left-right or not and turned 0-3 quarter turns, seeded by step
    (a resumed run augments as an uninterrupted one)."""
    gen = torch.Generator().manual_seed(seed * 7_919 + step)
    turns = torch.randint(0, 4, (len(x),), generator=gen)
    flips = torch.rand(len(x), generator=gen) < 0.5
    x = torch.where(flips.to(x.device)[:, None, None, None], x.flip(-1), x)
    out = x.clone()
    for k in (1, 2, 3):
        sel = (turns == k).nonzero().flatten().to(x.device)
        if len(sel):
            out[sel] = torch.rot90(x[sel], k, dims=(2, 3))
    return out


def objective_loss(z: torch.Tensor, cfg: EmbedConfig) -> torch.Tensor:
    """The loss of (3, B, dim) unit vectors: anchors, positives, negatives."""
    a, p, n = z[0], z[1], z[2]
    if cfg.objective == "triplet":
        d_pos = 1 - (a * p).sum(1)
        d_neg = 1 - (a * n).sum(1)
        return F.relu(d_pos - d_neg + cfg.margin).mean()
    target = torch.arange(len(a), device=z.device)
    fwd = a @ torch.cat([p, n]).T / cfg.temperature
    back = p @ torch.cat([a, n]).T / cfg.temperature
    return 0.5 * (F.cross_entropy(fwd, target) + F.cross_entropy(back, target))


@dataclass
class _State:
    """What a checkpoint holds."""

    model: Encoder
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    norm: dict
    counters: dict
    losses: list


def _start(cfg: EmbedConfig, files: DatasetFiles, stream: CogStream, device: torch.device,
           saved: dict | None) -> _State:
    """The encoder and optimizer: from the checkpoint, or new with fresh band statistics."""
    torch.manual_seed(cfg.seed)
    spec = EncoderSpec(len(stream.bands), cfg.dim, cfg.width)
    model = Encoder(spec).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    fp16 = device.type == "cuda" and cfg.amp and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler(device.type, enabled=fp16)
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        scaler.load_state_dict(saved["scaler"])
        return _State(model, opt, scaler, saved["norm"], saved["counters"], saved["losses"])
    counters = dict(step=0, epoch=0, in_epoch=0, triplets=0, seconds=0.0, wait=0.0,
                    loss_sum=0.0, loss_n=0)  # fmt: skip
    return _State(model, opt, scaler, initial_norm(files, stream.grids, cfg), counters, [])


class _Loop:
    """Optimizer steps over epochs of triplets until the first budget is spent; a
    checkpoint every `checkpoint_every` steps and at the end."""

    def __init__(self, cfg: EmbedConfig, stream: CogStream, state: _State,
                 device: torch.device, ckpt: Path, mid: str, progress: ProgressFn | None):
        self.cfg, self.stream, self.s, self.device = cfg, stream, state, device
        self.ckpt, self.mid, self.progress = ckpt, mid, progress
        self.c = state.counters
        self.t0, self.base = time.perf_counter(), self.c["seconds"]
        self.loss_acc = torch.zeros((), device=device)  # summed on the device: no sync a step

    def run(self) -> None:
        self.s.model.train()
        while not budget_spent(self.cfg, self.c):
            if self.epoch():
                self.c["epoch"] += 1
                self.c["in_epoch"] = 0
        if self.c["loss_n"] or not self.s.losses:
            self.checkpoint()

    def epoch(self) -> bool:
        """The rest of the current epoch's batches; True when they ran out."""
        cfg, c = self.cfg, self.c
        rows = 3 * cfg.batch_size
        windows = epoch_triplets(self.stream.grids, cfg, c["epoch"])[c["in_epoch"] * rows:]
        it = iter(self.stream.loader(windows))
        try:
            while not budget_spent(cfg, c):
                t = time.perf_counter()
                batch = next(it, None)
                c["wait"] += time.perf_counter() - t
                if batch is None:
                    return True
                c["in_epoch"] += 1
                self.step(batch["image"])
            return False
        finally:
            if hasattr(it, "close"):
                it.close()

    def step(self, images: torch.Tensor) -> None:
        cfg, c, s = self.cfg, self.c, self.s
        x = normalised(images.to(self.device, non_blocking=True), s.norm)
        if cfg.augment:
            x = augment(x, c["step"], cfg.seed)
        with autocast(self.device, cfg.amp):
            z = s.model.training_vectors(x)
        loss = objective_loss(z.float().view(3, cfg.batch_size, -1), cfg)
        # cosine decay over the budget to 5% of lr
        frac = 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * budget_used(cfg, c)))
        for group in s.opt.param_groups:
            group["lr"] = cfg.lr * frac
        s.opt.zero_grad(set_to_none=True)
        s.scaler.scale(loss).backward()
        s.scaler.step(s.opt)
        s.scaler.update()
        self.loss_acc += loss.detach().float()
        c["step"] += 1
        c["triplets"] += cfg.batch_size
        c["loss_n"] += 1
        c["seconds"] = self.base + time.perf_counter() - self.t0
        if c["step"] % cfg.checkpoint_every == 0 and not budget_spent(cfg, c):
            self.checkpoint()
        if self.progress:
            self.progress(dict(event="step", step=c["step"], seconds=c["seconds"]))

    def checkpoint(self) -> None:
        c, s = self.c, self.s
        c["loss_sum"] += float(self.loss_acc)
        self.loss_acc.zero_()
        if c["loss_n"]:
            s.losses.append((c["step"], c["loss_sum"] / c["loss_n"]))
        c["loss_sum"], c["loss_n"] = 0.0, 0
        save_atomic(dict(model=s.model.state_dict(), optimizer=s.opt.state_dict(),
                   scaler=s.scaler.state_dict(), norm=s.norm, counters=dict(c),
                   losses=s.losses, model_id=self.mid, config=self.cfg.to_dict()),
              self.ckpt)  # fmt: skip
        c["seconds"] = self.base + time.perf_counter() - self.t0
        if self.progress:
            self.progress(dict(event="checkpoint", step=c["step"],
                               loss=s.losses[-1][1] if s.losses else None))  # fmt: skip


def train_encoder(cfg: EmbedConfig, settings: Settings | None = None, *,
                  store: ModelSink | None = None,
                  progress: ProgressFn | None = None) -> EncoderResult:
    """Train (or continue, or return) the encoder of this config and data; save the model
    under `models_root` and, when given, in `store` (e.g. `train.store.model_store()`)."""
    settings = settings or Settings.from_env()
    files = dataset_files(cfg.dataset, cfg.variant, settings, cfg.role)
    mid = model_id(cfg, files.fingerprint)
    device = pick_device(cfg.device)
    ckpt = checkpoint_path(settings, cfg.dataset, mid)
    scfg = StreamConfig(sampler="random", patch_size=cfg.patch_size, seed=cfg.seed,
                        batch_size=3 * cfg.batch_size, dtype="float32", drop_last=True,
                        workers=cfg.workers, pin_memory=device.type == "cuda")  # fmt: skip
    stream = CogStream(files.images, None, scfg, windows=np.empty((0, 3), dtype=np.int64))
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
    return _finish(cfg, files, mid, state, device, ckpt, resumed_from, trained, len(val), store,
                   settings)


def _finish(cfg: EmbedConfig, files: DatasetFiles, mid: str, s: _State, device: torch.device,
            ckpt: Path, resumed_from: int, trained: bool, val_patches: int,
            store: ModelSink | None, settings: Settings) -> EncoderResult:
    """Write the model file (what inference and quality need) and the result."""
    c = s.counters
    path = models_root(settings) / cfg.dataset / f"{mid}.pt"
    if trained or not path.exists():
        save_atomic(dict(spec=s.model.spec.to_dict(), state_dict=s.model.state_dict(), norm=s.norm,
                   model_id=mid, config=cfg.to_dict(), dataset=cfg.dataset,
                   variant=cfg.variant, role=cfg.role, patch_size=cfg.patch_size,
                   fingerprint=files.fingerprint, steps=c["step"], seconds=c["seconds"]),
              path)  # fmt: skip
    uri = store.save(path, model_key(cfg.dataset, mid)) if store is not None else str(path)
    return EncoderResult(
        model_id=mid, dataset=cfg.dataset, variant=cfg.variant, device=str(device),
        steps=c["step"], triplets_seen=c["triplets"], seconds=c["seconds"],
        loss=s.losses[-1][1] if s.losses else None,
        triplets_per_s=c["triplets"] / c["seconds"] if c["seconds"] else 0.0,
        data_wait=c["wait"] / c["seconds"] if c["seconds"] else 0.0, val_patches=val_patches,
        model_path=path, model_uri=uri, checkpoint_path=ckpt, resumed_from=resumed_from,
        trained=trained, losses=list(s.losses), config=cfg.to_dict(),
    )
