"""The search space: one trial's configuration (a COG profile and an engine config), what a
study may suggest, and the named profiles' own configurations that every study starts from.

Levels are a few values per codec: each new profile is a variant written to disk, so the
space stays small on the format side.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ocog_lib.data.locate import bench_files
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings

STORAGES = ("local", "remote")
CODECS = ("none", "deflate", "zstd", "lerc_zstd")
PREDICTOR_CODECS = ("deflate", "zstd")
NAMED_BASELINES = ("default", "optimal_local", "optimal_remote")
REUSE_BASELINE = 8  # the compare's "reuse x8" rows
# the fields a named variant's files decide (its profile), not the trial
PROFILE_FIELDS = ("codec", "level", "predictor", "block_size")

Progress = Callable[[int, int, str], None]  # (done, total, message)


@dataclass(frozen=True)
class TrialConfig:
    """One point of the space: a COG profile and an engine configuration.

    `variant` names an existing variant folder (a named profile) instead of the profile
    fields; the fields then only describe it.
    """

    codec: str = "deflate"
    level: int | None = 6
    predictor: int | None = None
    block_size: int = 512
    sampler: str = "random"
    patch_size: int = 256
    batch_size: int = 32
    workers: int = 0
    threads: int = 0  # 0 = all cores
    prefetch: int = 4
    cache_mb: float = 128.0
    patches_per_tile: int = 1
    io_threads: int = -1  # remote requests in flight; -1 = the engine's choice
    variant: str | None = None

    def normalized(self) -> TrialConfig:
        """Drop knobs that do not apply (no level without a codec, predictor only for
        DEFLATE/ZSTD, tile reuse only with the block sampler)."""
        codec = self.codec.lower()
        if codec not in CODECS:
            raise InputError(f"codec '{self.codec}'", f"choose one of {', '.join(CODECS)}")
        if self.sampler not in ("random", "block"):
            raise InputError(f"sampler '{self.sampler}'", "choose random or block")
        return replace(
            self,
            codec=codec,
            level=None if codec == "none" else self.level,
            predictor=self.predictor if codec in PREDICTOR_CODECS and self.predictor != 1 else None,
            patches_per_tile=self.patches_per_tile if self.sampler == "block" else 1,
        )

    def profile_spec(self) -> str:
        """The spec `cog.profile_from_spec` reads, e.g. 'zstd:level=1,predictor=2,block=256'."""
        opts = [f"block={self.block_size}"]
        if self.level is not None:
            opts.insert(0, f"level={self.level}")
        if self.predictor is not None:
            opts.insert(-1, f"predictor={self.predictor}")
        if self.codec.startswith("lerc"):
            opts.append("max_z_error=0")
        return f"{self.codec}:{','.join(opts)}"

    def variant_name(self) -> str:
        from ocog_lib.cog.profiles import profile_from_spec

        return self.variant or profile_from_spec(self.profile_spec()).name

    def stream_config(self, *, length: int, seed: int):
        from ocog_lib.stream.config import StreamConfig

        return StreamConfig(
            sampler=self.sampler,
            patch_size=self.patch_size,
            batch_size=self.batch_size,
            length=length,
            seed=seed,
            workers=self.workers,
            threads=self.threads,
            prefetch=self.prefetch,
            cache_mb=self.cache_mb,
            patches_per_tile=self.patches_per_tile,
            shuffle_tiles=32,
            io_threads=self.io_threads,
        )

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["variant"] = self.variant_name()
        d["profile"] = None if self.variant else self.profile_spec()
        return d


@dataclass(frozen=True)
class SearchSpace:
    """What the study may try (see the module docstring for why levels are few)."""

    codecs: tuple[str, ...] = CODECS
    levels: dict[str, tuple[int, ...]] = field(
        default_factory=lambda: {"deflate": (1, 6, 9), "zstd": (1, 3, 9), "lerc_zstd": (1, 9)}
    )
    predictors: tuple[int, ...] = (1, 2)
    block_sizes: tuple[int, ...] = (128, 256, 512, 1024)
    samplers: tuple[str, ...] = ("random", "block")
    patch_sizes: tuple[int, ...] = (256,)  # fixed for comparability; e.g. (128, 256, 512, 1024)
    batch_size: int = 32
    max_workers: int = 2
    max_threads: int = 0  # 0 = the machine's cores
    prefetch: tuple[int, int] = (1, 8)
    cache_mb: tuple[int, int] = (32, 512)
    patches_per_tile: tuple[int, int] = (1, 16)
    io_threads: tuple[int, int] = (8, 128)  # remote only

    def suggest(self, trial, storage: str) -> TrialConfig:
        """A TrialConfig from the trial's suggestions (fixed params of enqueued trials win)."""
        codec = trial.suggest_categorical("codec", list(self.codecs))
        level = None
        if codec != "none" and self.levels.get(codec):
            level = self._one_of(trial, f"{codec}_level", self.levels[codec])
        predictor = None
        if codec in PREDICTOR_CODECS and self.predictors:
            predictor = self._one_of(trial, f"{codec}_predictor", self.predictors)
        sampler = trial.suggest_categorical("sampler", list(self.samplers))
        cores = self.max_threads or (os.cpu_count() or 1)
        return TrialConfig(
            codec=codec,
            level=level,
            predictor=predictor,
            block_size=trial.suggest_categorical("block_size", list(self.block_sizes)),
            sampler=sampler,
            patch_size=self._one_of(trial, "patch_size", self.patch_sizes),
            batch_size=self.batch_size,
            workers=trial.suggest_int("workers", 0, self.max_workers),
            threads=trial.suggest_int("threads", 1, max(1, cores)),
            prefetch=trial.suggest_int("prefetch", *self.prefetch),
            cache_mb=float(trial.suggest_int("cache_mb", *self.cache_mb, log=True)),
            patches_per_tile=(
                trial.suggest_int("patches_per_tile", *self.patches_per_tile)
                if sampler == "block"
                else 1
            ),
            io_threads=(
                trial.suggest_int("io_threads", *self.io_threads, log=True)
                if storage == "remote"
                else -1
            ),
        ).normalized()

    def fit_cache(self, decoded_mb: float | None, ratio: float = 4.0) -> SearchSpace:
        """Cap the engine cache at 1/ratio of the data (docs/benchmarks.md: data >= 4x any cache),
        so no trial wins by holding the whole dataset in memory."""
        if not decoded_mb:
            return self
        hi = max(1, min(self.cache_mb[1], int(decoded_mb / ratio)))
        return replace(self, cache_mb=(min(self.cache_mb[0], hi), hi))

    @staticmethod
    def _one_of(trial, name: str, values: tuple[int, ...]) -> int:
        return values[0] if len(values) == 1 else trial.suggest_categorical(name, list(values))


def baseline_configs(
    dataset: str, storage: str, settings: Settings, space: SearchSpace
) -> list[tuple[str, TrialConfig]]:
    """The named profiles as written, under the engine configs `bench compare` measures
    (random, and block with tile reuse x8), skipping named variants not written yet."""
    cores = space.max_threads or (os.cpu_count() or 1)
    out = []
    for name in NAMED_BASELINES:
        folder = settings.variant_dir(dataset, name)
        if not (folder / "manifest.json").exists():
            continue
        desc = describe_variant(dataset, name, settings)
        for sampler, reuse in (("random", 1), ("block", REUSE_BASELINE)):
            if sampler not in space.samplers:
                continue
            cfg = replace(
                desc,
                sampler=sampler,
                patch_size=space.patch_sizes[0],
                batch_size=space.batch_size,
                threads=cores,
                cache_mb=float(min(128, space.cache_mb[1])),
                patches_per_tile=min(reuse, space.patches_per_tile[1]),
                io_threads=32 if storage == "remote" else -1,
                variant=name,
            )
            out.append((f"{name} {sampler}" + (" reuse x8" if reuse > 1 else ""), cfg))
    return out


def decoded_mb(dataset: str, settings: Settings) -> float | None:
    """Decoded size of the benchmark scenes (a named variant's, else the prepared ones)."""
    import numpy as np
    import rasterio

    from ocog_lib.data.manifest import DatasetManifest

    images: list[str] = []
    for name in NAMED_BASELINES:
        if (settings.variant_dir(dataset, name) / "manifest.json").exists():
            images = bench_files(dataset, name, settings)[0]
            break
    if not images and (settings.prepared_dir(dataset) / "manifest.json").exists():
        m = DatasetManifest.load(settings.prepared_dir(dataset))
        images = [str(m.image_path(i)) for i in (m.by_role("bench") or m.items)]
    total = 0
    for path in images:
        with rasterio.open(path) as src:
            total += src.width * src.height * src.count * np.dtype(src.dtypes[0]).itemsize
    return total / 1e6 if images else None


def describe_variant(dataset: str, name: str, settings: Settings) -> TrialConfig:
    """Codec, predictor and block size read from a named variant's first image."""
    import rasterio

    from ocog_lib.cog.profiles import PROFILES

    images, _ = bench_files(dataset, name, settings)
    with rasterio.open(images[0]) as src:
        codec = (src.compression.name if src.compression else "none").lower()
        block = int(src.block_shapes[0][1])
        pred = int(src.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR", 1) or 1)
    codec = {"lerc_zstd": "lerc_zstd", "zstd": "zstd", "deflate": "deflate"}.get(codec, "none")
    level = PROFILES[name].level if name in PROFILES else None
    return TrialConfig(codec=codec, level=level, predictor=pred, block_size=block).normalized()


def on_variant(cfg: TrialConfig, dataset: str, variant: str, settings: Settings) -> TrialConfig:
    """`cfg`'s engine knobs on a named variant: the profile fields are the variant's own."""
    knobs = {k.name: getattr(cfg, k.name) for k in fields(cfg)
             if k.name not in (*PROFILE_FIELDS, "variant")}  # fmt: skip
    return replace(describe_variant(dataset, variant, settings), **knobs, variant=variant)


def baseline_params(cfg: TrialConfig, storage: str, space: SearchSpace) -> dict[str, Any]:
    """The optuna params that make `space.suggest` return `cfg` (for enqueue_trial)."""
    p: dict[str, Any] = {"codec": cfg.codec, "block_size": cfg.block_size, "sampler": cfg.sampler}
    if cfg.codec != "none" and len(space.levels.get(cfg.codec, ())) > 1:
        p[f"{cfg.codec}_level"] = cfg.level
    if cfg.codec in PREDICTOR_CODECS and len(space.predictors) > 1:
        p[f"{cfg.codec}_predictor"] = cfg.predictor or 1
    if len(space.patch_sizes) > 1:
        p["patch_size"] = cfg.patch_size
    p.update(workers=cfg.workers, threads=cfg.threads, prefetch=cfg.prefetch,
             cache_mb=int(cfg.cache_mb))  # fmt: skip
    if cfg.sampler == "block":
        p["patches_per_tile"] = cfg.patches_per_tile
    if storage == "remote":
        p["io_threads"] = cfg.io_threads
    return p
