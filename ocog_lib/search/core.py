"""Finding the fastest format + loader configuration: optuna TPE search and grids.

One trial = one COG profile (codec, level, predictor, block size) and one engine config
(sampler, patch, workers, threads, prefetch, cache, tile reuse, I/O threads), measured in
samples/s at steady state (start-up and warm-up timed apart). A profile not written yet
is written once into `variant_dir(dataset, <spec name>)` and reused by later trials. The
named profiles' own configurations are enqueued first, so a study can only match or beat
them, and both figures come out of the same run. Every trial, complete or not, lands in
DuckDB (`search_trials`, with the reason when it failed or was pruned); grids in
`grid_cells`. Studies live in optuna storage (a journal file under the data folder, or an
RDB URL from OCOG_OPTUNA_STORAGE), so several processes or machines share one study.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ocog_lib.bench.local import _length_for, bench_files, measure
from ocog_lib.env import scoped_env
from ocog_lib.errors import InputError, OcogError
from ocog_lib.settings import Settings

STORAGES = ("local", "remote")
CODECS = ("none", "deflate", "zstd", "lerc_zstd")
PREDICTOR_CODECS = ("deflate", "zstd")
NAMED_BASELINES = ("default", "optimal_local", "optimal_remote")
STORAGE_ENV = "OCOG_OPTUNA_STORAGE"
REUSE_BASELINE = 8  # the compare's "reuse x8" rows

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
        from ocog_lib.cog.variants import profile_from_spec

        return self.variant or profile_from_spec(self.profile_spec()).name

    def stream_config(self, *, length: int, seed: int):
        from ocog_lib.stream.dataset import StreamConfig

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


# --- the search space ------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchSpace:
    """What the study may try. Levels are a few values per codec: each new profile is a
    variant written to disk, so the space stays small on the format side."""

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
        desc = _describe_variant(dataset, name, settings)
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


def _describe_variant(dataset: str, name: str, settings: Settings) -> TrialConfig:
    """Codec, predictor and block size read from a named variant's first image."""
    import rasterio

    from ocog_lib.cog.variants import PROFILES

    images, _ = bench_files(dataset, name, settings)
    with rasterio.open(images[0]) as src:
        codec = (src.compression.name if src.compression else "none").lower()
        block = int(src.block_shapes[0][1])
        pred = int(src.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR", 1) or 1)
    codec = {"lerc_zstd": "lerc_zstd", "zstd": "zstd", "deflate": "deflate"}.get(codec, "none")
    level = PROFILES[name].level if name in PROFILES else None
    return TrialConfig(codec=codec, level=level, predictor=pred, block_size=block).normalized()


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


# --- where a trial's files come from ---------------------------------------------------------


@dataclass(frozen=True)
class RemoteOptions:
    """The W-remote workload: files behind the S3 endpoint, through the WAN shaper."""

    rtt_ms: float = 30.0
    cap_mb_s: float = 100.0
    bucket: str = "ocog-search"


class VariantFiles:
    """Image and mask paths per variant; writes a custom profile's variant once."""

    def __init__(self, dataset: str, settings: Settings, *, write_missing: bool = True):
        self.dataset = dataset
        self.settings = settings
        self.write_missing = write_missing
        self._files: dict[str, tuple[list[str], list[str]]] = {}

    def files(self, cfg: TrialConfig) -> tuple[list[str], list[str]]:
        name = cfg.variant_name()
        if name not in self._files:
            if cfg.variant is None:
                ensure_variant(self.dataset, cfg.profile_spec(), self.settings,
                               write=self.write_missing)  # fmt: skip
            self._files[name] = bench_files(self.dataset, name, self.settings)
        return self._files[name]


class RemoteFiles(VariantFiles):
    """The same variants uploaded (once, idempotently) to the endpoint the shaper fronts."""

    def __init__(self, dataset: str, settings: Settings, client, bucket: str, **kw):
        super().__init__(dataset, settings, **kw)
        self.client = client
        self.bucket = bucket
        self._uris: dict[str, list[str]] = {}

    def files(self, cfg: TrialConfig) -> tuple[list[str], list[str]]:
        from ocog_lib.remote.upload import upload_file

        images, _masks = super().files(cfg)
        name = cfg.variant_name()
        if name not in self._uris:
            uris = []
            for path in images:
                uri = f"s3://{self.bucket}/search/{self.dataset}/{name}/{Path(path).name}"
                upload_file(path, uri, client=self.client)
                uris.append(uri)
            self._uris[name] = uris
        return self._uris[name], []  # like `bench compare --remote`: images only


@contextmanager
def trial_files(
    dataset: str,
    storage: str,
    settings: Settings,
    remote: RemoteOptions | None = None,
    *,
    write_missing: bool = True,
) -> Iterator[VariantFiles]:
    """Local variant folders, or the embedded/configured S3 behind the WAN shaper."""
    if storage not in STORAGES:
        raise InputError(f"storage '{storage}'", f"choose one of {', '.join(STORAGES)}")
    if storage == "local":
        yield VariantFiles(dataset, settings, write_missing=write_missing)
        return
    from ocog_lib.bench.remote import _endpoint
    from ocog_lib.memory import not_measured
    from ocog_lib.remote.shaper import Shaper

    opts = remote or RemoteOptions()
    with _endpoint(opts.bucket) as (url, env_for, client):
        host, port = url.split("://", 1)[1].rsplit(":", 1)
        with (
            Shaper(host, int(port), rtt_ms=opts.rtt_ms, cap_mb_s=opts.cap_mb_s) as shaper,
            not_measured(shaper.pid),
            scoped_env(env_for(shaper.url)),
        ):
            yield RemoteFiles(dataset, settings, client, opts.bucket, write_missing=write_missing)


def ensure_variant(dataset: str, spec: str, settings: Settings, *, write: bool = True) -> str:
    """The variant folder of a custom profile spec, written from the prepared dataset
    when missing. Several processes may race: each writes to its own
    temporary folder and the first rename wins."""
    from ocog_lib.cog.variants import profile_from_spec, write_variant
    from ocog_lib.data.manifest import DatasetManifest

    profile = profile_from_spec(spec)
    folder = settings.variant_dir(dataset, profile.name)
    if (folder / "manifest.json").exists():
        return profile.name
    if not write:
        raise InputError(folder, f"variant '{profile.name}' is not written (writing is off)")
    prepared = DatasetManifest.load(settings.prepared_dir(dataset))
    tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        # every item, not only the benchmark scenes: training reads the winner's scenes
        write_variant(prepared, profile, tmp, check=False)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / "manifest.json").exists():
                raise
    finally:
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return profile.name


# --- one measurement -------------------------------------------------------------------------


@dataclass
class TrialMeasurement:
    samples_per_s: float
    mb_per_s: float
    startup_s: float
    warmup_s: float  # start-up + warm-up: the time before steady state, reported apart
    seconds: float
    samples: int
    cache_hit_rate: float | None = None


class TrialTimeout(OcogError):
    """A trial ran past its time box (start-up or batches too slow)."""


def measure_config(
    files: VariantFiles,
    cfg: TrialConfig,
    *,
    seconds: float,
    warmup_seconds: float,
    seed: int = 0,
    timeout_s: float | None = None,
    report: Callable[[int, float], None] | None = None,
    report_every: int = 4,
) -> TrialMeasurement:
    """One steady-state run of the engine (fresh engine, cold cache) for one config.

    `report(step, samples_per_s)` gets the running steady-state rate `report_every` times
    over the timed span (a pruner's intermediate values); it may raise to stop the trial.
    """
    from ocog_lib.stream.dataset import CogStream

    images, masks = files.files(cfg)
    expected = 3000 if isinstance(files, RemoteFiles) else 12000
    sc = cfg.stream_config(
        length=_length_for(seconds + warmup_seconds, expected, cfg.batch_size), seed=seed
    )
    # MB as an env var: the loader workers read it at start-up; restored after the trial
    with scoped_env(GDAL_CACHEMAX=str(max(1, int(cfg.cache_mb)))):
        stream = CogStream(images, masks or None, sc)
        r0 = stream.rasters[0]
        patch_bytes = cfg.patch_size * cfg.patch_size * r0.bands * r0.dtype.itemsize
        needed = [0, 0]
        t_start = time.perf_counter()
        deadline = t_start + timeout_s if timeout_s else None
        steady_from = [0.0]

        def batches():
            first_at = None
            counted = 0
            step = 0
            for batch in stream.loader():
                now = time.perf_counter()
                if deadline is not None and now > deadline:
                    raise TrialTimeout(
                        f"trial ran past its {timeout_s:g} s time box "
                        f"({'no batch yet' if first_at is None else 'batches too slow'})"
                    )
                s = batch["stats"]
                needed[0] += int(s[0])
                needed[1] += int(s[1])
                if first_at is None:
                    first_at = now
                elif now - first_at >= warmup_seconds:
                    if not steady_from[0]:
                        steady_from[0] = now
                    else:
                        counted += int(batch["image"].shape[0])
                        el = now - steady_from[0]
                        if report and el >= (step + 1) * seconds / report_every:
                            report(step, counted / el)
                            step += 1
                yield batch

        try:
            m = measure(batches(), min_seconds=seconds, warmup_seconds=warmup_seconds)
        finally:
            stream.close()
    hit = 1.0 - needed[1] / needed[0] if needed[0] else None
    return TrialMeasurement(
        samples_per_s=m.samples_per_s,
        mb_per_s=m.samples_per_s * patch_bytes / 1e6,
        startup_s=m.startup_s,
        warmup_s=(steady_from[0] - t_start) if steady_from[0] else m.startup_s,
        seconds=m.seconds,
        samples=m.samples,
        cache_hit_rate=hit,
    )


# --- the Bayesian search ---------------------------------------------------------------------


@dataclass
class TrialRecord:
    number: int
    state: str  # COMPLETE, PRUNED, FAIL
    value: float | None
    mb_per_s: float | None
    config: dict[str, Any]
    reason: str | None = None
    baseline: str | None = None  # a named profile's own configuration
    warmup_s: float | None = None
    seconds: float | None = None
    worker: str | None = None  # host:pid that ran it


@dataclass
class StudyResult:
    study: str
    dataset: str
    storage: str
    optuna_storage: str
    trials: list[TrialRecord]
    plots: dict[str, str] = field(default_factory=dict)

    @property
    def best(self) -> TrialRecord | None:
        done = [t for t in self.trials if t.state == "COMPLETE" and t.value is not None]
        return max(done, key=lambda t: t.value) if done else None

    @property
    def best_baseline(self) -> TrialRecord | None:
        done = [t for t in self.trials if t.baseline and t.state == "COMPLETE"]
        return max(done, key=lambda t: t.value) if done else None

    def summary(self) -> dict[str, Any]:
        best, base = self.best, self.best_baseline
        return {
            "study": self.study,
            "dataset": self.dataset,
            "storage": self.storage,
            "trials": len(self.trials),
            "states": {s: sum(t.state == s for t in self.trials) for s in
                       sorted({t.state for t in self.trials})},  # fmt: skip
            "best": asdict(best) if best else None,
            "best_baseline": asdict(base) if base else None,
            "speedup_vs_baseline": (best.value / base.value) if best and base and base.value
            else None,
        }


@dataclass(frozen=True)
class BayesianOptions:
    space: SearchSpace = field(default_factory=SearchSpace)
    warmup_seconds: float = 0.5
    timeout_s: float | None = None  # per trial; None = 10 x (seconds + warm-up) + 60
    baselines: bool = True
    study_name: str | None = None  # share one name across processes; None = a new study
    write_variants: bool = True
    remote: RemoteOptions = field(default_factory=RemoteOptions)
    prune: bool = True
    cache_vs_data: float = 4.0  # data >= this x the engine cache; 0 = leave the cache range


def optuna_storage(settings: Settings, storage_url: str | None = None):
    """Optuna storage: an RDB URL (argument or $OCOG_OPTUNA_STORAGE, e.g. postgresql://...,
    sqlite:///...), or a journal file (a path, default <data_dir>/optuna.journal) that
    several processes on one machine or a shared disk append to safely."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    url = storage_url or os.environ.get(STORAGE_ENV) or ""
    if "://" in url:
        return optuna.storages.RDBStorage(url), url
    path = Path(url) if url else settings.data_dir / "optuna.journal"
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path))), str(path)


def run_bayesian(
    dataset: str,
    storage: str,
    trials: int,
    seed: int,
    settings: Settings | None = None,
    *,
    seconds: float = 2.0,
    storage_url: str | None = None,
    progress: Progress | None = None,
    options: BayesianOptions | None = None,
) -> StudyResult:
    """Run `trials` trials (plus the named baselines) of a TPE study; rows to DuckDB."""
    import optuna
    from optuna.trial import TrialState

    from ocog_lib.host import git_sha, host_facts
    from ocog_lib.results import redact, write_rows

    settings = settings or Settings.from_env()
    opts = options or BayesianOptions()
    if storage not in STORAGES:
        raise InputError(f"storage '{storage}'", f"choose one of {', '.join(STORAGES)}")
    if opts.cache_vs_data:
        opts = replace(opts, space=opts.space.fit_cache(decoded_mb(dataset, settings),
                                                        opts.cache_vs_data))  # fmt: skip
    if trials < 0:
        raise InputError(f"trials {trials}", "must be 0 or more")
    if seconds <= 0:
        raise InputError(f"seconds {seconds}", "must be positive")
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # reasons go to DuckDB
    backend, where = optuna_storage(settings, storage_url)
    name = opts.study_name or f"{dataset}-{storage}-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(
        study_name=name,
        storage=backend,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=5),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
        if opts.prune
        else optuna.pruners.NopPruner(),
        load_if_exists=True,
    )
    study.set_user_attr("dataset", dataset)
    study.set_user_attr("storage", storage)
    study.set_user_attr("cache_mb_range", list(opts.space.cache_mb))
    host, sha = host_facts(), git_sha()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    timeout = opts.timeout_s or 10 * (seconds + opts.warmup_seconds) + 60
    say = progress or (lambda _d, _t, _m: None)

    with trial_files(dataset, storage, settings, opts.remote,
                     write_missing=opts.write_variants) as files:  # fmt: skip
        if opts.baselines:
            for label, cfg in baseline_configs(dataset, storage, settings, opts.space):
                study.enqueue_trial(
                    baseline_params(cfg, storage, opts.space),
                    user_attrs={"baseline": label, "baseline_variant": cfg.variant},
                    skip_if_exists=True,
                )
        waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        total = trials + waiting
        done = [0]

        def objective(trial: optuna.Trial) -> float:
            trial.set_user_attr("worker", worker)
            try:
                cfg = opts.space.suggest(trial, storage)
                variant = trial.user_attrs.get("baseline_variant")
                if variant:
                    cfg = replace(_describe_variant(dataset, variant, settings), **{
                        k.name: getattr(cfg, k.name) for k in fields(cfg)
                        if k.name not in ("codec", "level", "predictor", "block_size", "variant")
                    }, variant=variant)  # fmt: skip
                trial.set_user_attr("config", cfg.as_dict())
                try:
                    files.files(cfg)
                except (InputError, OcogError) as exc:
                    why = f"variant {cfg.variant_name()} unavailable: {exc}"
                    raise _pruned(trial, why) from exc

                def report(step: int, value: float) -> None:
                    trial.report(value, step)
                    if not variant and trial.should_prune():
                        raise _pruned(
                            trial, f"pruned at step {step}: {value:.0f} samples/s below the "
                            "median of earlier trials at this step",
                        )  # fmt: skip

                m = measure_config(files, cfg, seconds=seconds, warmup_seconds=opts.warmup_seconds,
                                   seed=seed, timeout_s=timeout, report=report)  # fmt: skip
                for k, v in asdict(m).items():
                    trial.set_user_attr(k, v)
                if m.samples == 0:
                    trial.set_user_attr("reason", "no samples in the timed span")
                    raise OcogError("no samples in the timed span")
                return m.samples_per_s
            except optuna.TrialPruned:
                raise
            except Exception as exc:
                trial.set_user_attr("reason", trial.user_attrs.get("reason")
                                    or f"{type(exc).__name__}: {exc}")  # fmt: skip
                raise

        def record(study_: optuna.Study, ft: optuna.trial.FrozenTrial) -> None:
            rec = _record(ft)
            write_rows(settings.results_db, "search_trials", [_row(study_.study_name, dataset,
                       storage, ft, rec, host, sha)],
                       replace_where={"study": study_.study_name, "trial": ft.number})  # fmt: skip
            done[0] += 1
            best = _best_value(study_)
            say(done[0], total, f"trial {ft.number} {rec.state.lower()}"
                + (f" {rec.value:.0f} samples/s" if rec.value is not None else "")
                + (f" (best {best:.0f})" if best else ""))  # fmt: skip

        study.optimize(objective, n_trials=total, catch=(Exception,), callbacks=[record],
                       gc_after_trial=False)  # fmt: skip

    recs = [_record(t) for t in study.get_trials(deepcopy=False)]
    result = StudyResult(name, dataset, storage, str(redact(where)), recs)
    return result


def _pruned(trial, reason: str):
    import optuna

    trial.set_user_attr("reason", reason)
    return optuna.TrialPruned(reason)


def _best_value(study) -> float | None:
    from optuna.trial import TrialState

    vals = [t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    return max(vals) if vals else None


def _record(ft) -> TrialRecord:
    ua = ft.user_attrs
    state = ft.state.name
    reason = ua.get("reason") or ft.system_attrs.get("fail_reason")
    return TrialRecord(
        number=ft.number,
        state=state,
        value=ft.value if state == "COMPLETE" else None,
        mb_per_s=ua.get("mb_per_s") if state == "COMPLETE" else None,
        config=ua.get("config") or dict(ft.params),
        reason=None if state == "COMPLETE" else (reason or state.lower()),
        baseline=ua.get("baseline"),
        warmup_s=ua.get("warmup_s"),
        seconds=ua.get("seconds"),
        worker=ua.get("worker"),
    )


def _row(study: str, dataset: str, storage: str, ft, rec: TrialRecord, host: dict,
         sha: str | None) -> dict[str, Any]:  # fmt: skip
    def utc(t: dt.datetime | None) -> dt.datetime | None:
        return t.astimezone(dt.UTC) if t else None

    params = {**rec.config, "baseline": rec.baseline, "worker": rec.worker}
    return {
        "study": study,
        "dataset": dataset,
        "storage": storage,
        "trial": ft.number,
        "params": params,
        "value": rec.value,
        "mb_per_s": rec.mb_per_s,
        "state": rec.state,
        "reason": rec.reason,
        "warmup_s": rec.warmup_s,
        "seconds": rec.seconds,
        "started_at": utc(ft.datetime_start),
        "finished_at": utc(ft.datetime_complete),
        "host": host,
        "git_sha": sha,
    }


def load_study(study: str, settings: Settings, storage_url: str | None = None) -> StudyResult:
    """A study's trials as records, from whichever process ran them."""
    import optuna

    backend, where = optuna_storage(settings, storage_url)
    s = optuna.load_study(study_name=study, storage=backend)
    recs = [_record(t) for t in s.get_trials(deepcopy=False)]
    ua = s.user_attrs
    return StudyResult(study, ua.get("dataset", ""), ua.get("storage", ""), where, recs)


# --- grids -----------------------------------------------------------------------------------

GRID_VARS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "compression": ("codec", str.lower),
    "codec": ("codec", str.lower),
    "level": ("level", lambda v: None if v.lower() in ("none", "") else int(v)),
    "predictor": ("predictor", int),
    "block_size": ("block_size", int),
    "blocksize": ("block_size", int),
    "sampler": ("sampler", str),
    "patch_size": ("patch_size", int),
    "batch_size": ("batch_size", int),
    "workers": ("workers", int),
    "threads": ("threads", int),
    "prefetch": ("prefetch", int),
    "cache_mb": ("cache_mb", float),
    "patches_per_tile": ("patches_per_tile", int),
    "io_threads": ("io_threads", int),
    "variant": ("variant", str),
}
GRID_DEFAULTS: dict[str, tuple[str, ...]] = {
    "codec": CODECS,
    "level": ("1", "6", "9"),
    "predictor": ("1", "2"),
    "block_size": ("128", "256", "512", "1024"),
    "sampler": ("random", "block"),
    "patch_size": ("128", "256", "512"),
    "batch_size": ("16", "32", "64"),
    "workers": ("0", "1", "2"),
    "threads": ("1", "2", "4"),
    "prefetch": ("1", "2", "4", "8"),
    "cache_mb": ("32", "128", "512"),
    "patches_per_tile": ("1", "4", "8", "16"),
    "io_threads": ("8", "32", "128"),
    "variant": NAMED_BASELINES,
}


@dataclass
class GridCell:
    value1: str
    value2: str
    config: dict[str, Any]
    samples_per_s: list[float] = field(default_factory=list)
    mb_per_s: list[float] = field(default_factory=list)
    reason: str | None = None  # why the cell has no measurement

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.samples_per_s) if self.samples_per_s else None

    @property
    def std(self) -> float | None:
        return statistics.pstdev(self.samples_per_s) if self.samples_per_s else None


@dataclass
class GridResult:
    grid_id: str
    dataset: str
    storage: str
    var1: str
    var2: str
    values1: list[str]
    values2: list[str]
    repeats: int
    cells: list[GridCell]
    plots: dict[str, str] = field(default_factory=dict)

    @property
    def best(self) -> GridCell | None:
        done = [c for c in self.cells if c.mean is not None]
        return max(done, key=lambda c: c.mean) if done else None


def grid_var(name: str) -> str:
    """The TrialConfig field a grid variable sets (aliases as the OCOG toolkit names them)."""
    if name not in GRID_VARS:
        raise InputError(f"grid variable '{name}'", f"choose one of {', '.join(GRID_VARS)}")
    return GRID_VARS[name][0]


def _grid_value(var: str, raw: str) -> Any:
    try:
        return GRID_VARS[var][1](str(raw).strip())
    except ValueError as exc:
        raise InputError(f"{var}={raw!r}", f"not a valid value ({exc})") from None


def run_grid(
    dataset: str,
    storage: str,
    var1: str,
    values1: list[str] | tuple[str, ...] | None,
    var2: str,
    values2: list[str] | tuple[str, ...] | None,
    repeats: int,
    settings: Settings | None = None,
    *,
    seconds: float = 2.0,
    warmup_seconds: float = 0.5,
    base: TrialConfig | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    remote: RemoteOptions | None = None,
) -> GridResult:
    """Every var1 x var2 cell, `repeats` times interleaved; mean and std per cell to DuckDB."""
    from ocog_lib.results import write_rows

    settings = settings or Settings.from_env()
    f1, f2 = grid_var(var1), grid_var(var2)
    if f1 == f2:
        raise InputError(f"grid {var1} x {var2}", "the two variables must differ")
    if repeats < 1:
        raise InputError(f"repeats {repeats}", "must be at least 1")
    v1 = [str(v) for v in (values1 or GRID_DEFAULTS[f1])]
    v2 = [str(v) for v in (values2 or GRID_DEFAULTS[f2])]
    if base is None:  # the cache capped at a quarter of the data, as in the search
        cap = SearchSpace(cache_mb=(128, 128)).fit_cache(decoded_mb(dataset, settings)).cache_mb
        base = TrialConfig(threads=os.cpu_count() or 1, cache_mb=float(cap[1]))
    cells = []
    for a in v1:
        for b in v2:
            cfg = replace(base, **{f1: _grid_value(var1, a), f2: _grid_value(var2, b)})
            if storage == "remote" and cfg.io_threads < 0:
                cfg = replace(cfg, io_threads=32)
            if cfg.variant:
                cfg = replace(_describe_variant(dataset, cfg.variant, settings), **{
                    k.name: getattr(cfg, k.name) for k in fields(cfg)
                    if k.name not in ("codec", "level", "predictor", "block_size")
                })  # fmt: skip
            try:
                cells.append(GridCell(a, b, cfg.normalized().as_dict()))
            except InputError as exc:  # e.g. a level the codec does not take
                cells.append(GridCell(a, b, asdict(cfg), reason=str(exc)))
    say = progress or (lambda _d, _t, _m: None)
    total = len(cells) * repeats
    done = 0
    with trial_files(dataset, storage, settings, remote) as files:
        for r in range(repeats):
            for cell in cells:
                if cell.reason:
                    continue
                cfg = _config_from_dict(cell.config)
                try:
                    m = measure_config(files, cfg, seconds=seconds, warmup_seconds=warmup_seconds,
                                       seed=seed)  # fmt: skip
                    cell.samples_per_s.append(m.samples_per_s)
                    cell.mb_per_s.append(m.mb_per_s)
                except (InputError, OcogError) as exc:
                    cell.reason = str(exc)
                done += 1
                say(done, total, f"repeat {r + 1}/{repeats}: {var1}={cell.value1} "
                    f"{var2}={cell.value2}" + (f" {cell.samples_per_s[-1]:.0f} samples/s"
                                               if cell.samples_per_s else " skipped"))  # fmt: skip
    result = GridResult(uuid.uuid4().hex[:12], dataset, storage, var1, var2, v1, v2, repeats,
                        cells)  # fmt: skip
    write_rows(settings.results_db, "grid_cells", [
        {
            "grid_id": result.grid_id, "dataset": dataset, "storage": storage,
            "var1": var1, "value1": c.value1, "var2": var2, "value2": c.value2,
            "repeats": len(c.samples_per_s), "mean_samples_per_s": c.mean,
            "std_samples_per_s": c.std,
            "mean_mb_per_s": statistics.fmean(c.mb_per_s) if c.mb_per_s else None,
            "config": {**c.config, "samples_per_s": c.samples_per_s, "reason": c.reason,
                       "seconds": seconds, "warmup_seconds": warmup_seconds},
        }
        for c in cells
    ])  # fmt: skip
    return result


def _config_from_dict(d: dict[str, Any]) -> TrialConfig:
    names = {f.name for f in fields(TrialConfig)}
    cfg = TrialConfig(**{k: v for k, v in d.items() if k in names})
    return cfg if d.get("profile") is None else replace(cfg, variant=None)


def to_json(obj: Any) -> str:
    return json.dumps(obj, default=str, sort_keys=True)
