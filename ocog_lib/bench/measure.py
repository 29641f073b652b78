"""Measuring one loader: time to the first batch apart, then steady-state samples/s.

Every row of a comparison is one of these measurements repeated (see `plan`); the loaders
measured are our engine (`run_ocog`), the OCOG toolkit's loader reproduced in `reference`
(`run_reference`) and HDF5 packages (`hdf5.measure_package`). See docs/benchmarks.md.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields, replace

from ocog_lib.stream.config import StreamConfig
from ocog_lib.stream.rasters import open_raster


@dataclass
class Measurement:
    samples_per_s: float
    startup_s: float
    samples: int
    seconds: float
    peak_rss_mb: float = 0.0
    peak_pss_mb: float | None = None
    cache_hit_rate: float | None = None
    batch_mix: float | None = None
    wire_bytes_per_sample: float | None = None  # remote sources: bytes received / sample
    skipped: int = 0
    delivered: int = 0  # every sample handed over, first batch and warm-up included
    # tile decodes per delivered sample: the engine's, and the fewest any loader needs for
    # the same windows and cache budget (bench.cache_limit)
    decodes_per_sample: float | None = None
    min_decodes_per_sample: float | None = None
    open_s: float | None = None  # making the loader (headers, windows, plan) before its first batch
    probe_delta: float | None = None  # what `probe` counted during the timed window


def length_for(seconds: float, expected_sps: float, batch: int) -> int:
    """Enough windows that a loader never runs dry inside the timed span."""
    return int(max(batch * 8, expected_sps * (seconds + 3)) // batch * batch)


def patch_bytes(bands: int, patch: int, itemsize: int) -> int:
    """Decoded bytes of one patch (what MB/s counts)."""
    return patch * patch * bands * itemsize


def config_dict(sc: StreamConfig) -> dict:
    """An engine config as a row records it (its length is sized per run, not a setting)."""
    d = asdict(sc)
    d.pop("length", None)
    return d


def config_from_row(config: dict, length: int) -> StreamConfig:
    """The engine config a row recorded (`config_dict`), without the facts measured beside
    it (decodes per sample, limits), for `length` windows."""
    names = {f.name for f in fields(StreamConfig)}
    return StreamConfig(**{k: v for k, v in config.items() if k in names}, length=length)


def decoded_gib(images: list[str]) -> float:
    """Decoded size of the scenes, all bands, in GiB."""
    total = 0
    for path in images:
        r = open_raster(path)
        total += r.height * r.width * r.bands * r.dtype.itemsize
    return total / 2**30


def measure(
    batches: Iterable,
    *,
    min_seconds: float,
    max_batches: int | None = None,
    on_done: Callable[[], dict] | None = None,
    warmup_seconds: float = 0.0,
    warmup_covers_startup: bool = False,
    probe: Callable[[], float] | None = None,
) -> Measurement:
    """Iterate batches; time to the first batch apart, then steady-state samples/s.

    Batches already in flight when the first one lands (prefetch, worker queues) would
    arrive almost free and flatter a short window: `warmup_seconds` after the first batch
    are consumed without being counted. With `warmup_covers_startup`, the warm-up lasts
    at least as long as the start-up did: a loader with many workers and a deep prefetch
    (the toolkit's 64 x 8 batches) fills its queues during a long start-up, and a window
    that drains them measures the queues, not the link. `probe` (e.g. the shaper's byte
    counter) is read at the start and the end of the timed window; the difference is
    `Measurement.probe_delta`.
    """
    from ocog_lib.memory import PeakMemory, trim_heap

    trim_heap()
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        it = iter(batches)
        first = next(it)
        startup = time.perf_counter() - t0
        warm = _batch_len(first)
        del first
        if warmup_covers_startup:
            warmup_seconds = max(warmup_seconds, startup)
        warm += _drain(it, warmup_seconds)
        n = 0
        nb = 0
        probe0 = probe() if probe else None
        t1 = time.perf_counter()
        for batch in it:
            n += _batch_len(batch)
            nb += 1
            if time.perf_counter() - t1 >= min_seconds or (max_batches and nb >= max_batches):
                break
        elapsed = time.perf_counter() - t1
        probe_delta = probe() - probe0 if probe else None
    extra = on_done() if on_done else {}
    return Measurement(
        samples_per_s=n / elapsed if elapsed > 0 else 0.0,
        startup_s=startup,
        samples=n,
        seconds=elapsed,
        delivered=warm + n,
        probe_delta=probe_delta,
        peak_rss_mb=mem.peak_rss_mb,
        peak_pss_mb=mem.peak_pss_mb,
        **extra,
    )


def _drain(it, seconds: float) -> int:
    """Samples consumed, uncounted, for `seconds` (the warm-up)."""
    got = 0
    end = time.perf_counter() + seconds
    while seconds > 0 and time.perf_counter() < end:
        batch = next(it, None)
        if batch is None:
            break
        got += _batch_len(batch)
    return got


def _batch_len(batch) -> int:
    if isinstance(batch, dict):
        return int(batch["image"].shape[0])
    if isinstance(batch, (list, tuple)):
        return int(batch[0].shape[0])
    return int(batch.shape[0])


def data_wait(make_batches: Callable[[], Iterable], *, step_ms: float, seconds: float) -> float:
    """Fraction of step time a consumer at `step_ms` per batch spends waiting for data."""
    from ocog_lib.bench.consumer import measure_data_wait

    n_steps = max(20, int(seconds * 1000 / step_ms))
    result = measure_data_wait(make_batches(), step_seconds=step_ms / 1000, n_steps=n_steps)
    return result.data_wait_fraction


def run_ocog(
    images: list[str],
    masks: list[str],
    cfg: StreamConfig,
    *,
    min_seconds: float,
    warmup_seconds: float = 0.0,
    warmup_covers_startup: bool = False,
    probe: Callable[[], float] | None = None,
) -> Measurement:
    """One steady-state measurement of our engine (a fresh engine: cold cache, new pools)."""
    from ocog_lib.bench.cache_limit import stream_decodes
    from ocog_lib.stream.dataset import CogStream  # torch: not for `search`'s --help

    t0 = time.perf_counter()
    stream = CogStream(images, masks or None, cfg)
    opened = time.perf_counter() - t0
    needed = [0, 0, 0, 0]  # tile refs, decodes, batches, samples delivered

    def counted():
        for batch in stream.loader():
            s = batch["stats"]
            needed[0] += int(s[0])
            needed[1] += int(s[1])
            needed[2] += 1
            needed[3] += int(batch["image"].shape[0])
            yield batch

    def done() -> dict:
        hit = 1.0 - needed[1] / needed[0] if needed[0] else 0.0
        wire = sum(r.source.stats().bytes for r in stream.rasters if r.remote)
        per_sample = wire / stream.stats.samples if wire and stream.stats.samples else None
        fewest = stream_decodes(stream, needed[2])  # the batches delivered, same order
        return {
            "cache_hit_rate": hit,
            "batch_mix": stream.batch_mix(),
            "wire_bytes_per_sample": per_sample,
            "skipped": stream.stats.skipped,
            "decodes_per_sample": needed[1] / needed[3] if needed[3] else None,
            "min_decodes_per_sample": fewest.decodes_per_sample,
            "open_s": opened,
        }

    try:
        return measure(
            counted(),
            min_seconds=min_seconds,
            on_done=done,
            warmup_seconds=warmup_seconds,
            warmup_covers_startup=warmup_covers_startup,
            probe=probe,
        )
    finally:
        stream.close()


def run_reference(
    images: list[str],
    masks: list[str],
    name: str,
    *,
    length: int,
    seed: int,
    min_seconds: float,
    patch_size: int = 256,
    batch_size: int = 32,
    warmup_seconds: float = 0.0,
    warmup_covers_startup: bool = False,
    probe: Callable[[], float] | None = None,
) -> Measurement:
    """One steady-state measurement of the toolkit's loader in its config `name`."""
    from ocog_lib.bench.reference import REFERENCE_CONFIGS, make_reference_loader

    # the toolkit's 4 workers on fewer cores is the configuration under test, not a mistake
    warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)
    cfg = replace(REFERENCE_CONFIGS[name], patch_size=patch_size, batch_size=batch_size)
    loader = make_reference_loader(images, cfg, length=length, seed=seed, mask_paths=masks or None)
    try:
        return measure(
            loader,
            min_seconds=min_seconds,
            warmup_seconds=warmup_seconds,
            warmup_covers_startup=warmup_covers_startup,
            probe=probe,
        )
    finally:
        it = getattr(loader, "_iterator", None)
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
        del loader
