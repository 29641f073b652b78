"""Training's configs: `TrainConfig` (what is learned, on what budget) and the four loader
configurations training is compared under, after the OCOG toolkit's.

- `*-default`: the `default` variant (DEFLATE) read with the random sampler.
- `*-optimal`: the winner of the loader search for that storage (`best_configs` view)
  when one has been recorded, otherwise the named optimal profile: `optimal_local`
  (uncompressed) or `optimal_remote` (LERC_ZSTD), block sampler, tile reuse.
- `remote-*` read the variant's files as s3:// objects (see `remote_files`).

Patch and batch size belong to the model, not the loader: training sets them. No torch
here: the CLI reads these defaults to build its flags.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ocog_lib.data.locate import variant_files
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings
from ocog_lib.stream.config import StreamConfig

LOADER_CONFIGS = ("local-default", "local-optimal", "remote-default", "remote-optimal")
# best_configs.storage values that count as local or remote search results
STORAGE_NAMES = {"local": ("local",), "remote": ("remote", "s3")}
# set by training, never taken from a search result
_TRAINING_OWNED = {"patch_size", "batch_size", "length", "seed", "sampler_seed", "dtype",
                   "pin_memory", "drop_last", "bands"}
# fields that do not change what is learned: a run may continue under other values
# (nproc: the same global batches and BatchNorm statistics whatever the process count)
_BUDGET_FIELDS = ("max_time", "iterations", "resume", "device", "eval_every", "nproc")


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
    # training processes (torch DDP: gloo on CPU, NCCL one per GPU); batch_size stays the
    # global batch, each process takes batch_size / nproc of it
    nproc: int = 1

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
                     "max_val_patches", "width", "nproc"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} {getattr(self, name)}", "must be at least 1")
        if self.batch_size % self.nproc:
            raise InputError(f"batch_size {self.batch_size}", f"is the global batch: it must "
                             f"divide among the {self.nproc} processes (nproc)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def learning_key(self) -> str:
        """Hash of everything that shapes the model (budgets and device left out)."""
        d = {k: v for k, v in self.to_dict().items() if k not in _BUDGET_FIELDS}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class LoaderConfig:
    """One named way of feeding the model: which files, which storage, which engine knobs."""

    name: str
    variant: str
    storage: str  # "local" or "remote"
    stream: dict = field(default_factory=dict)  # StreamConfig fields
    source: str = "profile"  # "profile" or "best_configs"

    def stream_config(self, **training: object) -> StreamConfig:
        """The engine config: these knobs plus what training owns (patch, batch, seed...)."""
        return StreamConfig(**{**self.stream, **training})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PROFILES: dict[str, LoaderConfig] = {
    "local-default": LoaderConfig("local-default", "default", "local", {"sampler": "random"}),
    "local-optimal": LoaderConfig(
        "local-optimal", "optimal_local", "local",
        {"sampler": "block", "patches_per_tile": 4, "prefetch": 4},
    ),
    "remote-default": LoaderConfig("remote-default", "default", "remote", {"sampler": "random"}),
    "remote-optimal": LoaderConfig(
        "remote-optimal", "optimal_remote", "remote",
        {"sampler": "block", "patches_per_tile": 4, "prefetch": 8, "io_threads": 64},
    ),
}


def resolve_loader_config(
    name: str, dataset: str, settings: Settings | None = None
) -> LoaderConfig:
    """The named config; `*-optimal` takes the search's best for this dataset when recorded."""
    if name not in PROFILES:
        raise InputError(f"loader config '{name}'", f"unknown; choose one of {LOADER_CONFIGS}")
    profile = PROFILES[name]
    if not name.endswith("-optimal"):
        return profile
    best = best_config_params(dataset, profile.storage, settings or Settings.from_env())
    if best is None:
        return profile
    return from_search(profile, best)


def best_config_params(dataset: str, storage: str, settings: Settings) -> dict | None:
    """The `params` of best_configs for dataset and storage kind, or None (no search yet)."""
    db = Path(settings.results_db)
    if not db.exists():
        return None
    from ocog_lib import results

    names = STORAGE_NAMES[storage]
    marks = ", ".join("?" for _ in names)
    try:
        _, rows = results.query(
            db,
            f"SELECT params FROM best_configs WHERE dataset = ? AND storage IN ({marks}) "
            "ORDER BY samples_per_s DESC LIMIT 1",
            [dataset, *names],
        )
    except InputError:  # an older results file without the view: no search result
        return None
    if not rows or rows[0][0] is None:
        return None
    params = rows[0][0]
    return json.loads(params) if isinstance(params, str) else dict(params)


def from_search(profile: LoaderConfig, params: dict) -> LoaderConfig:
    """A profile overridden by search params: `variant` and any StreamConfig field."""
    fields = {f.name for f in dataclasses.fields(StreamConfig)} - _TRAINING_OWNED
    stream = dict(profile.stream)
    stream.update({k: v for k, v in params.items() if k in fields})
    if "bands" in params and params["bands"] is not None:
        stream["bands"] = tuple(params["bands"])
    variant = str(params.get("variant", profile.variant))
    return dataclasses.replace(profile, variant=variant, stream=stream, source="best_configs")


@contextmanager
def remote_files(
    dataset: str, variant: str, settings: Settings, role: str = "scene"
) -> Iterator[tuple[list[str], list[str]]]:
    """The variant's files as s3:// URIs in the one variants layout (`remote.session`:
    $OCOG_S3_BUCKET, the configured or embedded endpoint), uploaded where missing, with
    the readers' and GDAL's environment set while open."""
    from ocog_lib.env import scoped_env
    from ocog_lib.remote.session import remote_session

    images, masks, _ = variant_files(dataset, variant, settings, role)
    with remote_session(settings) as session:
        folder = settings.variant_dir(dataset, variant)
        uris = session.upload_variant_files(dataset, variant, folder, images + masks)
        with scoped_env(session.env()):
            yield uris[: len(images)], uris[len(images) :]


@contextmanager
def loader_files(
    loader: LoaderConfig, dataset: str, settings: Settings, role: str = "scene"
) -> Iterator[tuple[list[str], list[str]]]:
    """(images, masks) to stream for this loader config: local paths or s3:// URIs."""
    if loader.storage == "remote":
        with remote_files(dataset, loader.variant, settings, role) as files:
            yield files
        return
    images, masks, _ = variant_files(dataset, loader.variant, settings, role)
    yield images, masks
