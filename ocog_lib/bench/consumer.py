"""Data-wait: how much of a training step is spent waiting for the loader, without a GPU.

The OCOG toolkit reports GPU utilization while a model eats its batches. On a machine with
no GPU the same question is answered by a consumer that holds each batch for a fixed step
time (what the GPU would take per step) and times how long it then waits for the next one:
a loader that keeps up leaves the consumer waiting ~0% of the time. Where CUDA and pynvml
are present, NVML utilization is sampled as well, so the two can be put side by side.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from ocog_lib.errors import InputError
from ocog_lib.host import NvmlMonitor

Busy = Literal["sleep", "spin"] | Callable[[Any], object]


@dataclass(frozen=True)
class DataWaitResult:
    """Steady-state figures over the measured steps; start-up is reported apart."""

    steps: int
    samples: int
    wait_seconds: float
    compute_seconds: float
    wall_seconds: float
    data_wait_fraction: float
    samples_per_s: float
    startup_seconds: float
    step_seconds: float
    gpu_util_samples: tuple[int, ...] = field(default=())

    @property
    def gpu_util_mean(self) -> float | None:
        if not self.gpu_util_samples:
            return None
        return sum(self.gpu_util_samples) / len(self.gpu_util_samples)


def count_samples(batch: Any) -> int:
    """Samples in a batch: the first dimension of its first tensor (tensor, tuple, dict)."""
    if isinstance(batch, torch.Tensor) or hasattr(batch, "shape"):
        if len(batch.shape) == 0:
            raise InputError("batch", "a 0-d tensor has no sample dimension")
        return int(batch.shape[0])
    if isinstance(batch, Mapping):
        items = list(batch.values())
    elif isinstance(batch, list | tuple):
        items = list(batch)
    else:
        raise InputError(f"batch of type {type(batch).__name__}", "expected tensors")
    if not items:
        raise InputError("batch", "empty; no tensor to count samples from")
    return count_samples(items[0])


def _busy(kind: Busy, seconds: float, batch: Any) -> None:
    if callable(kind):
        kind(batch)
    elif kind == "sleep":
        time.sleep(seconds)
    elif kind == "spin":
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            pass
    else:
        raise InputError(f"busy '{kind}'", "choose 'sleep', 'spin' or a callable")


def _check_wait_args(step_seconds: float, n_steps: int, warmup_steps: int, busy: Busy) -> None:
    if step_seconds < 0 or n_steps < 1 or warmup_steps < 0:
        raise InputError(
            f"step_seconds={step_seconds}, n_steps={n_steps}, warmup_steps={warmup_steps}",
            "need step_seconds >= 0, n_steps >= 1, warmup_steps >= 0",
        )
    if not (callable(busy) or busy in ("sleep", "spin")):
        raise InputError(f"busy '{busy}'", "choose 'sleep', 'spin' or a callable")


def measure_data_wait(
    batches: Iterable,
    *,
    step_seconds: float,
    n_steps: int,
    warmup_steps: int = 2,
    busy: Busy = "sleep",
) -> DataWaitResult:
    """Eat `warmup_steps + n_steps` batches, each for `step_seconds`, timing every wait.

    `busy="sleep"` holds the step without a CPU (a GPU step: the host only waits);
    `"spin"` burns one core (host-side work competing with the loader); a callable is run
    on each batch instead (a real model step; `step_seconds` then only labels the result).
    The first `warmup_steps` steps, including the wait for the first batch, are excluded.
    """
    _check_wait_args(step_seconds, n_steps, warmup_steps, busy)
    total = warmup_steps + n_steps
    iterator = iter(batches)
    monitor: NvmlMonitor | None = None
    wait = compute = 0.0
    samples = 0
    startup = 0.0
    steady_start = 0.0
    start = time.perf_counter()
    try:
        for step in range(total):
            if step == warmup_steps:
                monitor = NvmlMonitor.start_if_available()
                steady_start = time.perf_counter()
            t0 = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                raise InputError(
                    "batches", f"ran out after {step} batches; {total} needed"
                ) from None
            t1 = time.perf_counter()
            if step == 0:
                startup = t1 - start
            _busy(busy, step_seconds, batch)
            t2 = time.perf_counter()
            if step >= warmup_steps:
                wait += t1 - t0
                compute += t2 - t1
                samples += count_samples(batch)
        wall = time.perf_counter() - steady_start
    finally:
        util = monitor.stop() if monitor is not None else ()
    return DataWaitResult(
        steps=n_steps,
        samples=samples,
        wait_seconds=wait,
        compute_seconds=compute,
        wall_seconds=wall,
        data_wait_fraction=wait / wall if wall > 0 else 0.0,
        samples_per_s=samples / wall if wall > 0 else 0.0,
        startup_seconds=startup,
        step_seconds=step_seconds,
        gpu_util_samples=util,
    )
