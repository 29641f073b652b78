"""`CompressConfig`: the codec and hash head, what they learn from, on what budget.

Every default lives here, once; `FIELD_HELP` says what each field means, so a CLI builds
its flags from this module alone. No torch here: reading the defaults must not pay
torch's import.

Training runs in three stages over one budget (`recon_share`, `rate_share`, the rest):
1. reconstruction: MSE of the decoded patch (the entropy model fits the latents on the
   side, its gradient kept off the transforms);
2. rate + distortion: bpp + `lmbda` x MSE (Balle et al. 2017), MSE on the per-band
   normalised scale;
3. hashing: the codec frozen, the hash head learns from its quantised latents and the
   patches' labels. A share of 0 skips it (and the need for masks).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ocog_lib.embed.config import FIELD_HELP as _EMBED_HELP
from ocog_lib.embed.config import field_defaults
from ocog_lib.embed.config import model_id as model_id  # the run's id: config + data
from ocog_lib.errors import InputError

HASH_BITS = (16, 128)  # the accepted range of code lengths, in bits (multiples of 8)
# fields that do not change what is learned: a run continues under other values of these
_NOT_LEARNED = ("budget_s", "steps", "device", "resume", "checkpoint_every", "workers",
                "max_val_patches")  # fmt: skip

_SHARED_HELP = ("dataset", "variant", "role", "budget_s", "augment", "val_fraction",
                "max_val_patches", "norm_batches", "checkpoint_every", "device", "workers",
                "resume")  # fmt: skip
FIELD_HELP: dict[str, str] = {
    **{k: _EMBED_HELP[k] for k in _SHARED_HELP},
    "patch_size": "patch edge in px (a multiple of 8: three stride-2 stages)",
    "channels": "channels of the analysis and synthesis transforms' hidden layers",
    "latents": "channels of the quantised latent (what is entropy-coded and hashed)",
    "lmbda": "rate-distortion trade-off: loss = bpp + lmbda x MSE (normalised scale)",
    "hash_bits": "bits of a hash code (16..128, a multiple of 8)",
    "hash_width": "channels of the hash head's convolutions",
    "classes": "label classes the hash head's classifier knows (labels 0..classes-1)",
    "recon_share": "share of the budget for stage 1 (reconstruction only)",
    "rate_share": "share of the budget for stage 2 (rate + distortion)",
    "steps": "optimizer steps over all stages (the first budget reached ends the run)",
    "batch_size": "patches per optimizer step",
    "lr": "Adam learning rate of the codec's transforms (cosine decay within each stage)",
    "density_lr": "Adam learning rate of the entropy model's CDFs (cosine decay within each "
                  "stage): at the transforms' rate they lag the latents and the rate stays "
                  "near its initial ~5 bits a latent",
    "hash_batches": "engine batches per hashing step (a larger batch estimates each bit's "
                    "balance better; hashing steps are cheap)",
    "hash_lr": "Adam learning rate of the hash head and its loss weights",
    "clip_norm": "gradient norm the codec's steps are clipped to (GDN diverges without)",
    "batches_per_epoch": "training windows are redrawn (new seed) every epoch",
    "seed": "seed of windows, initial weights, noise and augmentations",
    "amp": "mixed precision on CUDA for the transforms (the entropy model stays float32)",
}


@dataclass(frozen=True)
class CompressConfig:
    dataset: str = "sample"
    variant: str = "optimal_local"
    role: str = "scene"
    patch_size: int = 32
    channels: int = 48
    latents: int = 32
    lmbda: float = 128.0
    hash_bits: int = 64
    hash_width: int = 64
    classes: int = 8
    recon_share: float = 0.15
    rate_share: float = 0.55
    budget_s: float = 300.0
    steps: int | None = None
    batch_size: int = 32
    lr: float = 1e-3
    density_lr: float = 1e-2
    hash_batches: int = 2
    hash_lr: float = 3e-3
    clip_norm: float = 1.0
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

    def __post_init__(self) -> None:
        """Every field checked before a file opens, the error naming field and value."""
        positive = ("patch_size", "channels", "latents", "hash_width", "classes", "batch_size",
                    "hash_batches", "max_val_patches", "norm_batches", "batches_per_epoch",
                    "checkpoint_every")  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"{name} {value!r}", "must be a positive integer")
        if self.patch_size % 8:
            raise InputError(f"patch_size {self.patch_size}", "must be a multiple of 8")
        lo, hi = HASH_BITS
        if not lo <= self.hash_bits <= hi or self.hash_bits % 8:
            raise InputError(f"hash_bits {self.hash_bits}",
                             f"must be a multiple of 8 in {lo}..{hi}")  # fmt: skip
        for name in ("lmbda", "lr", "density_lr", "hash_lr", "clip_norm", "budget_s"):
            if not getattr(self, name) > 0:
                raise InputError(f"{name} {getattr(self, name)}", "must be positive")
        self._check_shares()
        if self.steps is not None and self.steps < 1:
            raise InputError(f"steps {self.steps}", "must be at least 1")
        if not 0 < self.val_fraction < 1:
            raise InputError(f"val_fraction {self.val_fraction}", "must be between 0 and 1")
        if self.workers < 0:
            raise InputError(f"workers {self.workers}", "must be 0 or more")

    def _check_shares(self) -> None:
        r, d = self.recon_share, self.rate_share
        if not (0 <= r < 1 and 0 < d <= 1 and r + d <= 1):
            raise InputError(f"recon_share {r}, rate_share {d}",
                             "need 0 <= recon_share, 0 < rate_share, sum at most 1")

    @property
    def hash_share(self) -> float:
        """The budget left to stage 3 (hashing)."""
        return max(0.0, 1.0 - self.recon_share - self.rate_share)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def learning_dict(self) -> dict:
        """The fields that shape the model (budgets, device and inference knobs left out)."""
        return {k: v for k, v in self.to_dict().items() if k not in _NOT_LEARNED}


def defaults() -> dict:
    """Field -> default, for a CLI's flags."""
    return field_defaults(CompressConfig)
