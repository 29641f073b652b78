"""One trial's measurement (a fresh engine, cold cache, steady-state samples/s) and its
record: the TrialRecord a study reports and the row it leaves in `search_trials`."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ocog_lib.env import scoped_env
from ocog_lib.errors import OcogError
from ocog_lib.search.files import RemoteFiles, VariantFiles
from ocog_lib.search.space import TrialConfig


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


class _Watch:
    """Passes the loader's batches on while it counts cache stats, enforces the time box
    and reports the running steady-state rate to `report` (a pruner's intermediate values).
    Started when created: the time box counts from then."""

    def __init__(self, seconds: float, warmup_seconds: float, timeout_s: float | None,
                 report: Callable[[int, float], None] | None, report_every: int):  # fmt: skip
        self.seconds, self.warmup_seconds, self.timeout_s = seconds, warmup_seconds, timeout_s
        self.report, self.report_every = report, report_every
        self.needed = [0, 0]  # tiles needed, tiles fetched (cache misses)
        self.t_start = time.perf_counter()
        self.deadline = self.t_start + timeout_s if timeout_s else None
        self.steady_from = 0.0
        self.first_at: float | None = None
        self.counted = 0
        self.step = 0

    def batches(self, loader: Callable[[], Iterator]) -> Iterator:
        for batch in loader():
            now = time.perf_counter()
            if self.deadline is not None and now > self.deadline:
                raise TrialTimeout(
                    f"trial ran past its {self.timeout_s:g} s time box "
                    f"({'no batch yet' if self.first_at is None else 'batches too slow'})"
                )
            s = batch["stats"]
            self.needed[0] += int(s[0])
            self.needed[1] += int(s[1])
            if self.first_at is None:
                self.first_at = now
            elif now - self.first_at >= self.warmup_seconds:
                self._steady(now, int(batch["image"].shape[0]))
            yield batch

    def _steady(self, now: float, n: int) -> None:
        if not self.steady_from:
            self.steady_from = now
            return
        self.counted += n
        el = now - self.steady_from
        if self.report and el >= (self.step + 1) * self.seconds / self.report_every:
            self.report(self.step, self.counted / el)
            self.step += 1

    @property
    def hit_rate(self) -> float | None:
        return 1.0 - self.needed[1] / self.needed[0] if self.needed[0] else None


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
    from ocog_lib.bench.measure import length_for, measure
    from ocog_lib.stream.dataset import CogStream

    images, masks = files.files(cfg)
    expected = 3000 if isinstance(files, RemoteFiles) else 12000
    sc = cfg.stream_config(
        length=length_for(seconds + warmup_seconds, expected, cfg.batch_size), seed=seed
    )
    # MB as an env var: the loader workers read it at start-up; restored after the trial
    with scoped_env(GDAL_CACHEMAX=str(max(1, int(cfg.cache_mb)))):
        stream = CogStream(images, masks or None, sc)
        r0 = stream.rasters[0]
        patch_bytes = cfg.patch_size * cfg.patch_size * r0.bands * r0.dtype.itemsize
        watch = _Watch(seconds, warmup_seconds, timeout_s, report, report_every)
        try:
            m = measure(watch.batches(stream.loader), min_seconds=seconds,
                        warmup_seconds=warmup_seconds)  # fmt: skip
        finally:
            stream.close()
    return TrialMeasurement(
        samples_per_s=m.samples_per_s,
        mb_per_s=m.samples_per_s * patch_bytes / 1e6,
        startup_s=m.startup_s,
        warmup_s=(watch.steady_from - watch.t_start) if watch.steady_from else m.startup_s,
        seconds=m.seconds,
        samples=m.samples,
        cache_hit_rate=watch.hit_rate,
    )


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
    content_hash: str | None = None  # of the variant it streamed (data.lineage)


def trial_record(ft) -> TrialRecord:
    """The record of an optuna FrozenTrial (its user attrs hold what the objective set)."""
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
        content_hash=ua.get("content_hash"),
    )


def trial_row(study: str, dataset: str, storage: str, ft, rec: TrialRecord, host: dict,
              sha: str | None) -> dict[str, Any]:  # fmt: skip
    """The trial's `search_trials` row."""

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
        "content_hash": rec.content_hash,
    }
