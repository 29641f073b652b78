"""The data-wait consumer tells a loader that keeps up from one that does not."""

from __future__ import annotations

import time

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from ocog_lib.bench.consumer import count_samples, measure_data_wait
from ocog_lib.errors import InputError

STEP = 0.02


def producer(delay: float, batch: int = 8, first_delay: float | None = None):
    """Yields batches forever, sleeping `delay` before each (`first_delay` before the first)."""
    n = 0
    while True:
        time.sleep(first_delay if n == 0 and first_delay is not None else delay)
        yield torch.zeros(batch, 4, 16, 16)
        n += 1


def test_fast_producer_leaves_little_wait():
    result = measure_data_wait(producer(0.0), step_seconds=STEP, n_steps=20)
    assert result.steps == 20 and result.samples == 160
    assert result.data_wait_fraction < 0.2
    assert result.compute_seconds >= 20 * STEP
    assert result.wall_seconds >= result.wait_seconds + result.compute_seconds * 0.99
    assert result.samples_per_s == pytest.approx(result.samples / result.wall_seconds)
    assert result.gpu_util_mean is None or 0 <= result.gpu_util_mean <= 100


def test_slow_producer_leaves_the_consumer_waiting():
    result = measure_data_wait(producer(3 * STEP), step_seconds=STEP, n_steps=15)
    assert result.data_wait_fraction > 0.5
    assert result.wait_seconds > result.compute_seconds


def test_startup_is_reported_apart_from_the_steady_state():
    slow_start = producer(0.0, first_delay=0.3)
    result = measure_data_wait(slow_start, step_seconds=STEP, n_steps=10, warmup_steps=1)
    assert result.startup_seconds >= 0.3
    assert result.data_wait_fraction < 0.2  # the 0.3 s start is not in the steady state


def test_spin_burns_the_step_on_the_cpu():
    result = measure_data_wait(producer(0.0), step_seconds=STEP, n_steps=5, busy="spin")
    assert result.compute_seconds >= 5 * STEP


def test_a_callable_step_sees_every_batch_and_real_loader_tuples_count():
    data = TensorDataset(torch.arange(100).float()[:, None], torch.arange(100))
    loader = DataLoader(data, batch_size=10)
    seen: list[torch.Tensor] = []
    result = measure_data_wait(
        loader, step_seconds=0.0, n_steps=8, warmup_steps=2, busy=lambda b: seen.append(b[1])
    )
    assert result.samples == 80
    assert torch.equal(torch.cat(seen), torch.arange(100))


def test_count_samples_reads_the_first_tensor():
    assert count_samples(torch.zeros(5, 3)) == 5
    assert count_samples((torch.zeros(6, 3), torch.zeros(7))) == 6
    assert count_samples({"image": torch.zeros(4, 2), "mask": torch.zeros(9)}) == 4
    assert count_samples([{"image": torch.zeros(3, 1)}]) == 3
    with pytest.raises(InputError, match="batch of type str"):
        count_samples("x")


def test_too_few_batches_and_bad_arguments_are_refused():
    with pytest.raises(InputError, match="batches: ran out after 3 batches; 7 needed"):
        measure_data_wait([torch.zeros(2)] * 3, step_seconds=0.0, n_steps=5)
    with pytest.raises(InputError, match="n_steps=0"):
        measure_data_wait([], step_seconds=0.01, n_steps=0)
    with pytest.raises(InputError, match="busy 'nap'"):
        measure_data_wait([], step_seconds=0.01, n_steps=1, busy="nap")  # type: ignore[arg-type]
