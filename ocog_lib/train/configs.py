"""The four loader configurations training is compared under, after the OCOG toolkit's.

- `*-default`: the `default` variant (DEFLATE) read with the random sampler.
- `*-optimal`: the winner of the loader search for that storage (`best_configs` view)
  when one has been recorded, otherwise the named optimal profile: `optimal_local`
  (uncompressed) or `optimal_remote` (LERC_ZSTD), block sampler, tile reuse.
- `remote-*` read the variant's files as s3:// objects (see `remote_files`).

Patch and batch size belong to the model, not the loader: training sets them.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ocog_lib.errors import InputError
from ocog_lib.settings import Settings
from ocog_lib.stream.dataset import StreamConfig

LOADER_CONFIGS = ("local-default", "local-optimal", "remote-default", "remote-optimal")
# best_configs.storage values that count as local or remote search results
STORAGE_NAMES = {"local": ("local",), "remote": ("remote", "s3")}
# set by training, never taken from a search result
_TRAINING_OWNED = {"patch_size", "batch_size", "length", "seed", "sampler_seed", "dtype",
                   "pin_memory", "drop_last", "bands"}
DEFAULT_BUCKET = "ocog"


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


def variant_files(
    dataset: str, variant: str, settings: Settings, role: str = "scene"
) -> tuple[list[str], list[str], list[str]]:
    """(images, masks, relative paths of the images) of a written variant; masks required."""
    from ocog_lib.bench.local import bench_files
    from ocog_lib.data.manifest import DatasetManifest

    images, masks = bench_files(dataset, variant, settings, role=role)
    if not masks:
        raise InputError(
            settings.variant_dir(dataset, variant), "no masks for these images: cannot train"
        )
    root = DatasetManifest.load(settings.variant_dir(dataset, variant)).root
    return images, masks, [str(Path(p).relative_to(root)) for p in images + masks]


@contextmanager
def remote_files(
    dataset: str, variant: str, settings: Settings, role: str = "scene",
    bucket: str | None = None,
) -> Iterator[tuple[list[str], list[str]]]:
    """The variant's files as s3:// URIs, uploaded to the configured endpoint
    ($AWS_ENDPOINT_URL_S3) or an embedded one, with GDAL/engine env set while open."""
    from ocog_lib.bench.remote import _endpoint
    from ocog_lib.env import scoped_env
    from ocog_lib.remote.upload import upload_file

    bucket = bucket or os.environ.get("OCOG_TRAIN_BUCKET", DEFAULT_BUCKET)
    images, masks, rels = variant_files(dataset, variant, settings, role)
    with _endpoint(bucket) as (_url, env_for, client):
        uris = []
        for path, rel in zip(images + masks, rels, strict=True):
            uri = f"s3://{bucket}/train/{dataset}/{variant}/{rel}"
            upload_file(path, uri, client=client)
            uris.append(uri)
        with scoped_env(env_for(None)):
            yield uris[: len(images)], uris[len(images):]


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
