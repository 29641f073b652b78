"""`EmbedConfig`: what the patch encoder learns, from which files, on what budget.

Every default lives here, once; `FIELD_HELP` says what each field means, so a CLI builds
its flags (and `--help`) from this module alone. No torch here: reading the defaults must
not pay torch's import.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from ocog_lib.errors import InputError

OBJECTIVES = ("infonce", "triplet")
DIMS = (16, 64)  # the documented sizes; any dim >= 2 is accepted
# fields that do not change what is learned: a run continues under other values of these
_NOT_LEARNED = ("budget_s", "steps", "device", "resume", "checkpoint_every", "workers",
                "h3_resolution", "max_val_patches")  # fmt: skip

FIELD_HELP: dict[str, str] = {
    "dataset": "prepared dataset to learn from",
    "variant": "COG variant whose files are streamed",
    "role": "manifest items to use (all items when none has this role)",
    "dim": "embedding dimension (16 as VectorGeo, 64 for finer retrieval)",
    "patch_size": "patch edge in px (a multiple of 4)",
    "neighbour_px": "a positive is the anchor shifted by half this to this many px",
    "distant_px": "a negative lies in another file or its centre is farther than this",
    "objective": "infonce (in-batch contrastive) or triplet (margin on cosine distance)",
    "margin": "triplet margin on cosine distance",
    "temperature": "InfoNCE softmax temperature",
    "budget_s": "seconds of training; a second call with the same config continues",
    "steps": "optimizer steps (the first budget reached ends the run)",
    "batch_size": "triplets per optimizer step",
    "lr": "AdamW learning rate (cosine decay over the budget)",
    "weight_decay": "AdamW weight decay",
    "width": "channels of the encoder's first stage (x2, x4 further down)",
    "augment": "random flips and quarter turns of each patch",
    "val_fraction": "bottom share of each raster's rows held out for quality",
    "max_val_patches": "cap on held-out patches (evenly thinned)",
    "norm_batches": "batches of training patches for the per-band mean/std",
    "batches_per_epoch": "anchor windows are redrawn (new seed) every epoch",
    "checkpoint_every": "steps between checkpoints",
    "seed": "seed of windows, initial weights and augmentations",
    "device": "auto (cuda when present), cpu, cuda, cuda:0 ...",
    "amp": "mixed precision on CUDA",
    "workers": "DataLoader processes (0: threads in this process)",
    "resume": "continue a checkpoint of the same config and data",
    "h3_resolution": "H3 resolution of the cells (default: from the pixel size)",
}


@dataclass(frozen=True)
class EmbedConfig:
    dataset: str = "sample"
    variant: str = "optimal_local"
    role: str = "scene"
    dim: int = 16
    patch_size: int = 64
    neighbour_px: int = 64  # positives shifted 32..64 px: half-overlapping to adjacent
    distant_px: int = 256
    objective: str = "infonce"
    margin: float = 0.2
    temperature: float = 0.5
    budget_s: float = 300.0
    steps: int | None = None
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    width: int = 16
    augment: bool = True
    val_fraction: float = 0.25
    max_val_patches: int = 2048
    norm_batches: int = 4
    batches_per_epoch: int = 64
    checkpoint_every: int = 50
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    workers: int = 0
    resume: bool = True
    h3_resolution: int | None = None  # None: resolution_for(pixel size, patch_size)

    def __post_init__(self) -> None:
        """Every field checked before a file opens, the error naming field and value."""
        positive = ("dim", "patch_size", "batch_size", "width", "max_val_patches",
                    "norm_batches", "batches_per_epoch", "checkpoint_every")  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"{name} {value!r}", "must be a positive integer")
        if self.dim < 2:
            raise InputError(f"dim {self.dim}", "must be at least 2")
        if self.patch_size % 4:
            raise InputError(f"patch_size {self.patch_size}", "must be a multiple of 4")
        if self.objective not in OBJECTIVES:
            raise InputError(f"objective {self.objective!r}", f"choose one of {OBJECTIVES}")
        if not 0 < self.neighbour_px <= self.patch_size:
            raise InputError(f"neighbour_px {self.neighbour_px}",
                             f"must be in 1..patch_size ({self.patch_size}): overlapping "
                             "or adjacent")  # fmt: skip
        if self.distant_px <= 2 * self.neighbour_px:
            raise InputError(f"distant_px {self.distant_px}",
                             f"must exceed 2 x neighbour_px ({2 * self.neighbour_px})")
        self._check_budget()
        for name in ("lr", "margin", "temperature"):
            if not getattr(self, name) > 0:
                raise InputError(f"{name} {getattr(self, name)}", "must be positive")
        if not 0 < self.val_fraction < 1:
            raise InputError(f"val_fraction {self.val_fraction}", "must be between 0 and 1")
        if self.workers < 0:
            raise InputError(f"workers {self.workers}", "must be 0 or more")
        if self.h3_resolution is not None and not 0 <= self.h3_resolution <= 15:
            raise InputError(f"h3_resolution {self.h3_resolution}", "must be 0..15")

    def _check_budget(self) -> None:
        if not self.budget_s > 0:
            raise InputError(f"budget_s {self.budget_s}", "must be positive seconds")
        if self.steps is not None and self.steps < 1:
            raise InputError(f"steps {self.steps}", "must be at least 1")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def learning_dict(self) -> dict:
        """The fields that shape the model (budgets, device and inference knobs left out)."""
        return {k: v for k, v in self.to_dict().items() if k not in _NOT_LEARNED}


def model_id(cfg, data_fingerprint: str) -> str:
    """The model's id: a hash of what is learned (`cfg.learning_dict()`, of this or any
    config that has one) and of the data it is learned from."""
    text = json.dumps({"config": cfg.learning_dict(), "data": data_fingerprint},
                      sort_keys=True)  # fmt: skip
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def field_defaults(cls: type) -> dict:
    """Field -> default of a config dataclass, for a CLI's flags."""
    return {f.name: f.default for f in dataclasses.fields(cls)}


def defaults() -> dict:
    return field_defaults(EmbedConfig)
