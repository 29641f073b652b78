"""Throughput benchmarks: one configuration, or ocog against its yardsticks in one run.

Every figure is a ratio measured side by side on the same files with the same CPU and
memory budget (see docs/benchmarks.md): our engine, the OCOG toolkit's loader reproduced in
`reference.py`, and the decode (or memory) limit for the same windows. Configurations
are interleaved over repeats and medians reported, so drift on a shared machine hits
every row alike. Start-up (time to the first batch) is measured apart from steady state.
"""

from __future__ import annotations

import json
import os
import statistics
import time
import uuid
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

from ocog_lib.data.manifest import DatasetManifest
from ocog_lib.env import gdal_cache_of_config
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings
from ocog_lib.stream.dataset import CogStream, StreamConfig

# The same memory for everyone: GDAL's block cache (reference) = the engine's tile cache.
DEFAULT_CACHE_MB = 128
BEST_REUSE = 8  # windows per decoded tile for the "best" rows


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
    probe_delta: float | None = None  # what `probe` counted during the timed window


@dataclass
class BenchRow:
    name: str
    loader: str  # "ocog", "reference", "decode_limit", "memory_limit"
    variant: str
    sampler: str
    samples_per_s: float
    mb_per_s: float
    startup_s: float | None = None
    cache_hit_rate: float | None = None
    batch_mix: float | None = None
    peak_rss_mb: float | None = None  # summed over the loader's processes
    peak_pss_mb: float | None = None  # the same, counting pages shared by workers once
    ratio_vs_reference_default: float | None = None
    ratio_vs_limit: float | None = None
    data_wait_fraction: float | None = None
    repeats: list[float] = field(default_factory=list)
    config: dict = field(default_factory=dict)

    @classmethod
    def from_repeats(
        cls, name: str, loader: str, variant: str, sampler: str,
        ms: list[Measurement], patch_bytes: int, config: dict,
    ) -> BenchRow:  # fmt: skip
        """One row from a loader's interleaved repeats: medians of rates, peaks of memory."""
        sps = statistics.median(m.samples_per_s for m in ms)
        return cls(
            name=name,
            loader=loader,
            variant=variant,
            sampler=sampler,
            samples_per_s=sps,
            mb_per_s=sps * patch_bytes / 1e6,
            startup_s=statistics.median(m.startup_s for m in ms),
            cache_hit_rate=_median_or_none([m.cache_hit_rate for m in ms]),
            batch_mix=_median_or_none([m.batch_mix for m in ms]),
            peak_rss_mb=max(m.peak_rss_mb for m in ms),
            peak_pss_mb=_max_or_none([m.peak_pss_mb for m in ms]),
            repeats=[m.samples_per_s for m in ms],
            config=config,
        )


def bench_files(
    dataset: str, variant: str, settings: Settings | None = None, role: str = "bench"
) -> tuple[list[str], list[str]]:
    """Image and mask paths of a dataset's variant (benchmark scenes by default)."""
    settings = settings or Settings.from_env()
    folder = settings.variant_dir(dataset, variant)
    if not (folder / "manifest.json").exists():
        raise InputError(
            folder,
            f"variant '{variant}' of '{dataset}' is not written yet: materialize "
            f"cog_variants[{dataset}|{variant}] (or `ocog variants write`) first",
        )
    manifest = DatasetManifest.load(folder)
    items = manifest.by_role(role) or manifest.items
    images = [str(manifest.image_path(i)) for i in items]
    masks = [str(manifest.mask_path(i)) for i in items if i.mask]
    return images, masks if len(masks) == len(images) else []


def _patch_bytes(stream_or_bands: int, patch: int, itemsize: int) -> int:
    return patch * patch * stream_or_bands * itemsize


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
        warm_end = time.perf_counter() + warmup_seconds
        while warmup_seconds > 0 and time.perf_counter() < warm_end:
            batch = next(it, None)
            if batch is None:
                break
            warm += _batch_len(batch)
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
    stream = CogStream(images, masks or None, cfg)
    needed = [0, 0]

    def counted():
        for batch in stream.loader():
            s = batch["stats"]
            needed[0] += int(s[0])
            needed[1] += int(s[1])
            yield batch

    def done() -> dict:
        hit = 1.0 - needed[1] / needed[0] if needed[0] else 0.0
        wire = sum(r.source.stats().bytes for r in stream.rasters if r.remote)
        per_sample = wire / stream.stats.samples if wire and stream.stats.samples else None
        return {
            "cache_hit_rate": hit,
            "batch_mix": stream.batch_mix(),
            "wire_bytes_per_sample": per_sample,
            "skipped": stream.stats.skipped,
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


@dataclass(frozen=True)
class CompareConfig:
    dataset: str = "sample"
    variants: tuple[str, ...] = ("default", "optimal_local", "optimal_remote")
    samplers: tuple[str, ...] = ("random", "block")
    patch_size: int = 256
    batch_size: int = 32
    repeats: int = 3
    seconds: float = 4.0  # steady-state seconds per measurement
    cache_mb: float = DEFAULT_CACHE_MB
    threads: int = 0  # 0 = all cores
    seed: int = 0
    best_reuse: int = BEST_REUSE
    with_masks: bool = True
    warmup_seconds: float = 0.5  # after the first batch, not counted (see measure)
    # data-wait: a consumer eating one batch per step_ms (what a GPU would); 0 = skip
    step_ms: float = 50.0

    @classmethod
    def quick(cls, **overrides) -> CompareConfig:
        return replace(cls(repeats=1, seconds=1.5), **overrides)


def _length_for(seconds: float, expected_sps: float, batch: int) -> int:
    """Enough windows that a loader never runs dry inside the timed span."""
    return int(max(batch * 8, expected_sps * (seconds + 3)) // batch * batch)


@gdal_cache_of_config
def compare(
    cfg: CompareConfig,
    settings: Settings | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """ocog vs the reference loader vs the decode limit, one run, interleaved repeats."""
    settings = settings or Settings.from_env()
    say = progress or (lambda _msg: None)
    # the reference default config always runs on the default variant: the yardstick
    files = {v: bench_files(cfg.dataset, v, settings) for v in {"default", *cfg.variants}}
    masks_of = (lambda v: files[v][1]) if cfg.with_masks else (lambda v: [])
    threads = cfg.threads or (os.cpu_count() or 1)
    p, b = cfg.patch_size, cfg.batch_size

    def ours(variant: str, sampler: str, reuse: int) -> StreamConfig:
        return StreamConfig(
            sampler=sampler,
            patch_size=p,
            batch_size=b,
            seed=cfg.seed,
            workers=0,
            threads=threads,
            cache_mb=cfg.cache_mb,
            patches_per_tile=reuse,
            shuffle_tiles=32,
            length=_length_for(cfg.seconds + cfg.warmup_seconds, 12000 if reuse > 1 else 8000, b),
        )

    # the runs, interleaved over repeats
    plan: list[tuple[str, str, str, str, Callable[[], Measurement], dict]] = []
    ref_len = _length_for(cfg.seconds + cfg.warmup_seconds, 1500, b)
    refs = [("default", "default", "random")]  # the yardstick, always
    if "optimal_local" in cfg.variants:
        refs.append(("local_optimal", "optimal_local", "block"))
    for name, v, sampler in refs:
        run = partial(
            run_reference, files[v][0], masks_of(v), name, length=ref_len, seed=cfg.seed,
            min_seconds=cfg.seconds, patch_size=p, batch_size=b,
            warmup_seconds=cfg.warmup_seconds, warmup_covers_startup=True,
        )  # fmt: skip
        plan.append((f"reference {name}", "reference", v, sampler, run, {"reference_config": name}))
    for v in cfg.variants:
        for s in cfg.samplers:
            for reuse in (1, cfg.best_reuse) if cfg.best_reuse > 1 else (1,):
                sc = ours(v, s, reuse)
                label = f"ocog {s}" + (f" reuse x{reuse}" if reuse > 1 else "")
                plan.append(
                    (
                        label,
                        "ocog",
                        v,
                        s,
                        (
                            lambda v=v, sc=sc: run_ocog(
                                files[v][0],
                                masks_of(v),
                                sc,
                                min_seconds=cfg.seconds,
                                warmup_seconds=cfg.warmup_seconds,
                                warmup_covers_startup=True,
                            )
                        ),
                        _config_dict(sc),
                    )
                )

    results: dict[int, list[Measurement]] = {i: [] for i in range(len(plan))}
    for r in range(cfg.repeats):
        for i, (label, _loader, v, _s, fn, _c) in enumerate(plan):
            say(f"repeat {r + 1}/{cfg.repeats}: {label} on {v}")
            results[i].append(fn())

    # limits for the same windows each sampler draws (decode; memory for uncompressed)
    limits: dict[tuple[str, str], BenchRow] = {}
    for v in cfg.variants:
        images = files[v][0]
        probe = CogStream(images, None, ours(v, "random", 1))
        r0 = probe.rasters[0]
        itemsize, bands = r0.dtype.itemsize, r0.bands
        compressed = r0.fast and r0.index.compression != 1
        for s in cfg.samplers:
            say(f"limit: {s} on {v}")
            if compressed:
                from ocog_lib.bench.limits import decode_limit

                wins = CogStream(
                    images, None, replace(ours(v, s, 1), length=128 // b * b or b)
                ).windows

                def one(images=images, wins=wins, v=v):
                    return decode_limit(
                        images,
                        wins,
                        p,
                        threads=threads,
                        min_seconds=cfg.seconds / 2,
                        masks=masks_of(v) or None,
                    )

                kind = "decode_limit"
            else:
                from ocog_lib.bench.limits import memory_limit

                def one(images=images, bands=bands, itemsize=itemsize, v=v):
                    return memory_limit(
                        images,
                        p,
                        bands,
                        itemsize,
                        threads=threads,
                        min_seconds=cfg.seconds / 2,
                        mask_itemsize=1 if masks_of(v) else 0,  # uint8 class masks
                    )

                kind = "memory_limit"
            # a ceiling is the best the hardware did: on a shared machine a neighbour only
            # ever lowers a measurement, so the limit is the max of `repeats` runs
            runs = [one() for _ in range(cfg.repeats)]
            lim = max(runs, key=lambda x: x.samples_per_s)
            limits[(v, s)] = BenchRow(
                name=f"{kind.replace('_', ' ')} {s}",
                loader=kind,
                variant=v,
                sampler=s,
                samples_per_s=lim.samples_per_s,
                mb_per_s=lim.mb_per_s,
                repeats=[x.samples_per_s for x in runs],
                config={
                    "threads": lim.threads,
                    "tiles_per_sample": lim.tiles_per_sample,
                    "with_masks": bool(masks_of(v)),
                },
            )

    patch_bytes = {}  # per variant: one header parse, not one per row
    for v in {v for _, _, v, _, _, _ in plan}:
        r = CogStream(files[v][0][:1], None, StreamConfig(length=1)).rasters[0]
        patch_bytes[v] = _patch_bytes(r.bands, p, r.dtype.itemsize)
    rows = [
        BenchRow.from_repeats(label, loader, v, s, results[i], patch_bytes[v], conf)
        for i, (label, loader, v, s, _fn, conf) in enumerate(plan)
    ]
    if cfg.step_ms > 0:
        _attach_data_wait(rows, plan, files, masks_of, cfg, say)
    rows.extend(limits.values())
    ref = next(r for r in rows if r.name == "reference default")
    for row in rows:
        row.ratio_vs_reference_default = row.samples_per_s / ref.samples_per_s
        lim = limits.get((row.variant, row.sampler))
        if lim is not None and row.loader not in ("decode_limit", "memory_limit"):
            row.ratio_vs_limit = row.samples_per_s / lim.samples_per_s
    return {
        "run_id": uuid.uuid4().hex[:12],
        "dataset": cfg.dataset,
        "storage": "local",
        "files": {v: [Path(p).name for p in files[v][0]] for v in cfg.variants},
        "decoded_gib": _decoded_gib(files["default"][0]),
        "cache_mb": cfg.cache_mb,
        "compare": asdict(cfg),
        "rows": [asdict(r) for r in rows],
    }


def _attach_data_wait(rows, plan, files, masks_of, cfg: CompareConfig, say) -> None:
    """Data-wait for the reference configs and our fastest row, at the same step time."""
    ours = [i for i, r in enumerate(rows) if r.loader == "ocog"]
    picks = [i for i, r in enumerate(rows) if r.loader == "reference"]
    if ours:
        picks.append(max(ours, key=lambda i: rows[i].samples_per_s))
    n = max(20, int(cfg.seconds * 1000 / cfg.step_ms)) + 4
    for i in picks:
        row = rows[i]
        say(f"data-wait at {cfg.step_ms:g} ms/step: {row.name} on {row.variant}")
        images, masks = files[row.variant][0], masks_of(row.variant)
        if row.loader == "reference":
            from ocog_lib.bench.reference import REFERENCE_CONFIGS, make_reference_loader

            rc = replace(
                REFERENCE_CONFIGS[row.config["reference_config"]],
                patch_size=cfg.patch_size,
                batch_size=cfg.batch_size,
            )
            make = lambda rc=rc, im=images, mk=masks: make_reference_loader(  # noqa: E731
                im, rc, length=n * cfg.batch_size, seed=cfg.seed, mask_paths=mk or None
            )
        else:
            sc = StreamConfig(**{**row.config, "length": n * cfg.batch_size})
            make = lambda sc=sc, im=images, mk=masks: CogStream(  # noqa: E731
                im, mk or None, sc
            ).loader()
        row.data_wait_fraction = data_wait(make, step_ms=cfg.step_ms, seconds=cfg.seconds)
        row.config = {**row.config, "data_wait_step_ms": cfg.step_ms}


def _median_or_none(vals: list[float | None]) -> float | None:
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def _max_or_none(vals: list[float | None]) -> float | None:
    vals = [v for v in vals if v is not None]
    return max(vals) if vals else None


def _decoded_gib(images: list[str]) -> float:
    total = 0
    for path in images:
        r = CogStream([path], None, StreamConfig(length=1)).rasters[0]
        total += r.height * r.width * r.bands * r.dtype.itemsize
    return total / 2**30


def _config_dict(sc: StreamConfig) -> dict:
    d = asdict(sc)
    d.pop("length", None)
    return d


def stream_once(images: list[str], masks: list[str], sc: StreamConfig, *, seconds: float) -> dict:
    """`ocog bench stream`: one configuration of our engine."""
    m = run_ocog(images, masks, sc, min_seconds=seconds)
    r = CogStream(images[:1], None, StreamConfig(length=1)).rasters[0]
    bands = len(sc.bands) if sc.bands else r.bands
    pb = _patch_bytes(bands, sc.patch_size, r.dtype.itemsize)
    return {
        "name": "ocog",
        "samples_per_s": m.samples_per_s,
        "mb_per_s": m.samples_per_s * pb / 1e6,
        "startup_s": m.startup_s,
        "cache_hit_rate": m.cache_hit_rate,
        "batch_mix": m.batch_mix,
        "peak_rss_mb": m.peak_rss_mb,
        "samples": m.samples,
        "seconds": m.seconds,
        "config": _config_dict(sc),
    }


def format_rows(rows: list[dict], extra: tuple[str, ...] = ()) -> str:
    cols = [
        ("name", "name", "{}"),
        ("variant", "variant", "{}"),
        ("samples/s", "samples_per_s", "{:.0f}"),
        ("MB/s", "mb_per_s", "{:.0f}"),
        ("x ref", "ratio_vs_reference_default", "{:.2f}"),
        ("/ limit", "ratio_vs_limit", "{:.2f}"),
        ("hit", "cache_hit_rate", "{:.2f}"),
        ("mix", "batch_mix", "{:.2f}"),
        ("RSS MB", "peak_rss_mb", "{:.0f}"),
        ("PSS MB", "peak_pss_mb", "{:.0f}"),
        ("start s", "startup_s", "{:.2f}"),
        ("wait", "data_wait_fraction", "{:.2f}"),
    ]
    cols += [
        (
            k.replace("_per_sample", "/sample").replace("_", " "),
            k,
            "{:.2f}" if "utilization" in k else "{:.0f}",  # a fraction; bytes otherwise
        )
        for k in extra
    ]
    table = [[h for h, _, _ in cols]]
    for r in rows:
        vals = {**(r.get("config") or {}), **r}
        table.append(["-" if vals.get(k) is None else f.format(vals[k]) for _, k, f in cols])
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    lines = [
        "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def result_rows_for_db(result: dict, host: dict, git_sha: str | None) -> list[dict]:
    """Flatten a compare/stream result into `stream_benchmarks` rows."""
    ts = time.time()
    out = []
    for r in result["rows"]:
        out.append(
            {
                "run_id": result["run_id"],
                "ts": ts,
                "name": r["name"],
                "dataset": result["dataset"],
                "variant": r["variant"],
                "storage": result.get("storage", "local"),
                "sampler": r["sampler"],
                "loader": r["loader"],
                "samples_per_s": r["samples_per_s"],
                "mb_per_s": r["mb_per_s"],
                "ratio_vs_reference_default": r.get("ratio_vs_reference_default"),
                "ratio_vs_limit": r.get("ratio_vs_limit"),
                "cache_hit_rate": r.get("cache_hit_rate"),
                "peak_rss_mb": r.get("peak_rss_mb"),
                "peak_pss_mb": r.get("peak_pss_mb"),
                "data_wait_fraction": r.get("data_wait_fraction"),
                "startup_s": r.get("startup_s"),
                "batch_mix": r.get("batch_mix"),
                "rtt_ms": None,
                "cap_mb_s": None,
                "config": json.dumps(r.get("config", {}), sort_keys=True, default=str),
                "host": json.dumps(host, sort_keys=True, default=str),
                "git_sha": git_sha,
            }
        )
    return out
