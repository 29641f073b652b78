"""The Bayesian search: an optuna TPE study (seeded, median pruner) whose first trials are
the named profiles' own configurations, so it can only match or beat them.

Studies live in optuna storage (a journal file under the data folder, or an RDB URL from
OCOG_OPTUNA_STORAGE), so several processes or machines share one study; every trial,
complete or not, lands in DuckDB (`search_trials`, with the reason when it failed or was
pruned).
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ocog_lib.errors import InputError, OcogError
from ocog_lib.search.files import RemoteOptions, VariantFiles, trial_files
from ocog_lib.search.measure import TrialRecord, measure_config, trial_record, trial_row
from ocog_lib.search.space import (
    STORAGES,
    Progress,
    SearchSpace,
    TrialConfig,
    baseline_configs,
    baseline_params,
    decoded_mb,
    on_variant,
)
from ocog_lib.settings import Settings

STORAGE_ENV = "OCOG_OPTUNA_STORAGE"


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
    from ocog_lib.host import git_sha, host_facts
    from ocog_lib.secrets import redact_value

    settings = settings or Settings.from_env()
    opts = _checked_options(dataset, storage, trials, seconds, settings, options)
    study, where = _open_study(dataset, storage, seed, settings, storage_url, opts)
    host, sha = host_facts(), git_sha()
    with trial_files(dataset, storage, settings, opts.remote,
                     write_missing=opts.write_variants) as files:  # fmt: skip
        if opts.baselines:
            _enqueue_baselines(study, dataset, storage, settings, opts.space)
        total = trials + _waiting(study)
        objective = _Objective(
            dataset, storage, settings, opts, files, seconds, seed,
            worker=f"{socket.gethostname()}:{os.getpid()}",
            timeout_s=opts.timeout_s or 10 * (seconds + opts.warmup_seconds) + 60,
        )  # fmt: skip
        record = _Recorder(dataset, storage, settings, total, progress or _quiet, host, sha)
        study.optimize(objective, n_trials=total, catch=(Exception,), callbacks=[record],
                       gc_after_trial=False)  # fmt: skip
    recs = [trial_record(t) for t in study.get_trials(deepcopy=False)]
    return StudyResult(study.study_name, dataset, storage, str(redact_value(where)), recs)


def _quiet(_done: int, _total: int, _message: str) -> None:
    pass


def _checked_options(
    dataset: str, storage: str, trials: int, seconds: float, settings: Settings,
    options: BayesianOptions | None,
) -> BayesianOptions:  # fmt: skip
    """The options, the cache range fitted to the data; InputError for what cannot run."""
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
    return opts


def _open_study(dataset: str, storage: str, seed: int, settings: Settings,
                storage_url: str | None, opts: BayesianOptions):  # fmt: skip
    """(study, where its storage is): created, or joined when the name exists."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # reasons go to DuckDB
    backend, where = optuna_storage(settings, storage_url)
    study = optuna.create_study(
        study_name=opts.study_name or f"{dataset}-{storage}-{uuid.uuid4().hex[:8]}",
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
    return study, where


def _enqueue_baselines(study, dataset: str, storage: str, settings: Settings,
                       space: SearchSpace) -> None:  # fmt: skip
    for label, cfg in baseline_configs(dataset, storage, settings, space):
        study.enqueue_trial(
            baseline_params(cfg, storage, space),
            user_attrs={"baseline": label, "baseline_variant": cfg.variant},
            skip_if_exists=True,
        )


def _waiting(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


@dataclass(frozen=True)
class _Objective:
    """One trial: its config (a baseline's variant, or the sampler's suggestion), the
    variant's files, the measurement; the reason goes to the trial when it fails."""

    dataset: str
    storage: str
    settings: Settings
    opts: BayesianOptions
    files: VariantFiles
    seconds: float
    seed: int
    worker: str
    timeout_s: float

    def __call__(self, trial) -> float:
        import optuna

        trial.set_user_attr("worker", self.worker)
        try:
            return self._measure(trial)
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            trial.set_user_attr("reason", trial.user_attrs.get("reason")
                                or f"{type(exc).__name__}: {exc}")  # fmt: skip
            raise

    def _config(self, trial) -> TrialConfig:
        cfg = self.opts.space.suggest(trial, self.storage)
        variant = trial.user_attrs.get("baseline_variant")
        if variant:
            cfg = on_variant(cfg, self.dataset, variant, self.settings)
        trial.set_user_attr("config", cfg.as_dict())
        return cfg

    def _measure(self, trial) -> float:
        cfg = self._config(trial)
        try:
            self.files.files(cfg)
        except (InputError, OcogError) as exc:
            why = f"variant {cfg.variant_name()} unavailable: {exc}"
            raise _pruned(trial, why) from exc
        trial.set_user_attr("content_hash", self.files.content_hash(cfg))
        prune = not trial.user_attrs.get("baseline_variant")  # baselines run to the end

        def report(step: int, value: float) -> None:
            trial.report(value, step)
            if prune and trial.should_prune():
                raise _pruned(
                    trial, f"pruned at step {step}: {value:.0f} samples/s below the "
                    "median of earlier trials at this step",
                )  # fmt: skip

        m = measure_config(self.files, cfg, seconds=self.seconds, seed=self.seed,
                           warmup_seconds=self.opts.warmup_seconds, timeout_s=self.timeout_s,
                           report=report)  # fmt: skip
        for k, v in asdict(m).items():
            trial.set_user_attr(k, v)
        if m.samples == 0:
            trial.set_user_attr("reason", "no samples in the timed span")
            raise OcogError("no samples in the timed span")
        return m.samples_per_s


@dataclass
class _Recorder:
    """After each trial: its `search_trials` row (replacing a row of the same trial) and
    a progress line."""

    dataset: str
    storage: str
    settings: Settings
    total: int
    say: Progress
    host: dict
    sha: str | None
    done: int = 0

    def __call__(self, study, ft) -> None:
        from ocog_lib.results import write_rows

        rec = trial_record(ft)
        row = trial_row(study.study_name, self.dataset, self.storage, ft, rec, self.host,
                        self.sha)  # fmt: skip
        write_rows(self.settings.results_db, "search_trials", [row],
                   replace_where={"study": study.study_name, "trial": ft.number})  # fmt: skip
        self.done += 1
        best = _best_value(study)
        self.say(self.done, self.total, f"trial {ft.number} {rec.state.lower()}"
                 + (f" {rec.value:.0f} samples/s" if rec.value is not None else "")
                 + (f" (best {best:.0f})" if best else ""))  # fmt: skip


def _pruned(trial, reason: str):
    import optuna

    trial.set_user_attr("reason", reason)
    return optuna.TrialPruned(reason)


def _best_value(study) -> float | None:
    from optuna.trial import TrialState

    vals = [t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    return max(vals) if vals else None


def load_study(study: str, settings: Settings, storage_url: str | None = None) -> StudyResult:
    """A study's trials as records, from whichever process ran them."""
    import optuna

    backend, where = optuna_storage(settings, storage_url)
    s = optuna.load_study(study_name=study, storage=backend)
    recs = [trial_record(t) for t in s.get_trials(deepcopy=False)]
    ua = s.user_attrs
    return StudyResult(study, ua.get("dataset", ""), ua.get("storage", ""), where, recs)
