"""`ocog bench compare`: ocog against its yardsticks on local files, in one run.

Every figure is a ratio measured side by side on the same files with the same CPU and
memory budget (see docs/benchmarks.md): our engine, the OCOG toolkit's loader reproduced in
`reference.py`, and the decode (or memory) limit for the same windows. Configurations
are interleaved over repeats and medians reported (`plan`), so drift on a shared machine
hits every row alike. Start-up (time to the first batch) is measured apart from steady
state. `bench_stream` measures one configuration of the engine (`ocog bench stream`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from ocog_lib.bench.config import CompareConfig
from ocog_lib.bench.measure import (
    config_dict,
    config_from_row,
    data_wait,
    decoded_gib,
    length_for,
    patch_bytes,
    run_ocog,
    run_reference,
)
from ocog_lib.bench.plan import PlannedRun, run_interleaved
from ocog_lib.bench.rows import (
    LIMIT_LOADERS,
    BenchRow,
    Comparison,
    StreamRow,
    StreamRun,
    set_content_hashes,
)
from ocog_lib.data.locate import bench_files, variant_content_hash
from ocog_lib.env import gdal_cache_of_config
from ocog_lib.settings import Settings
from ocog_lib.stream.config import StreamConfig
from ocog_lib.stream.dataset import CogStream
from ocog_lib.stream.rasters import open_raster


@dataclass(frozen=True)
class _Scenes:
    """A comparison's files per variant, and what every row derives from them."""

    cfg: CompareConfig
    files: dict[str, tuple[list[str], list[str]]]  # variant -> (images, masks)
    threads: int
    patch: dict[str, int]  # variant -> decoded bytes of one patch

    def images(self, variant: str) -> list[str]:
        return self.files[variant][0]

    def masks(self, variant: str) -> list[str]:
        return self.files[variant][1] if self.cfg.with_masks else []

    def stream_config(self, sampler: str, reuse: int) -> StreamConfig:
        """Our engine's config for a row: all cores in one process, the shared cache."""
        cfg = self.cfg
        return StreamConfig(
            sampler=sampler,
            patch_size=cfg.patch_size,
            batch_size=cfg.batch_size,
            seed=cfg.seed,
            workers=0,
            threads=self.threads,
            cache_mb=cfg.cache_mb,
            patches_per_tile=reuse,
            shuffle_tiles=32,
            channels_last=cfg.channels_last,
            length=length_for(
                cfg.seconds + cfg.warmup_seconds, 12000 if reuse > 1 else 8000, cfg.batch_size
            ),
        )


@gdal_cache_of_config
def compare(
    cfg: CompareConfig,
    settings: Settings | None = None,
    progress: Callable[[str], None] | None = None,
) -> Comparison:
    """ocog vs the reference loader vs the decode limit, one run, interleaved repeats."""
    settings = settings or Settings.from_env()
    say = progress or (lambda _msg: None)
    # the reference default config always runs on the default variant: the yardstick
    files = {v: bench_files(cfg.dataset, v, settings) for v in {"default", *cfg.variants}}
    hashes = {v: variant_content_hash(cfg.dataset, v, settings) for v in files}
    patch = {v: _patch_bytes_of(images[0], cfg.patch_size) for v, (images, _) in files.items()}
    scenes = _Scenes(cfg, files, cfg.threads or (os.cpu_count() or 1), patch)
    peers = _peer_plan(scenes, settings, say)
    plan = [*_reference_runs(scenes), *_ocog_runs(scenes), *_scaling_runs(scenes), *peers.runs]
    results = run_interleaved(plan, cfg.repeats, say)
    limits = _limit_rows(scenes, say)
    rows = [run.row(ms) for run, ms in zip(plan, results, strict=True)]
    if cfg.step_ms > 0:
        _attach_data_wait(rows, scenes, say)
    rows.extend(limits.values())
    _set_ratios(rows, limits)
    _set_scaling(rows)
    set_content_hashes(rows, hashes)
    return Comparison(
        run_id=uuid.uuid4().hex[:12],
        dataset=cfg.dataset,
        decoded_gib=decoded_gib(files["default"][0]),
        cache_mb=cfg.cache_mb,
        config=cfg,
        rows=tuple(rows),
        files={v: [Path(p).name for p in files[v][0]] for v in cfg.variants},
        skipped_peers=tuple(p.to_dict() for p in peers.skipped),
    )


def _peer_plan(scenes: _Scenes, settings: Settings, say: Callable[[str], None]):
    """The peers asked for, on the default variant with ocog's plain random windows (the
    row `ocog random` reads the same sampling), each in its own process."""
    from ocog_lib.bench.peers import PeerPlan, peer_runs

    cfg = scenes.cfg
    if not cfg.peers:
        return PeerPlan((), ())
    return peer_runs(
        scenes.images("default"), scenes.masks("default"), sampler="random",
        patch_size=cfg.patch_size, batch_size=cfg.batch_size, cache_mb=cfg.cache_mb,
        seconds=cfg.seconds, warmup_seconds=cfg.warmup_seconds, seed=cfg.seed,
        threads=scenes.threads, data_dir=settings.data_dir, variant="default",
        peers=cfg.peers, say=say)  # fmt: skip


def _patch_bytes_of(image: str, patch: int) -> int:
    r = open_raster(image)
    return patch_bytes(r.bands, patch, r.dtype.itemsize)


def _reference_runs(scenes: _Scenes) -> list[PlannedRun]:
    """The toolkit's default config on the default variant (the yardstick, always), and
    its local-optimal config on the local-optimal variant when that is compared."""
    cfg = scenes.cfg
    ref_len = length_for(cfg.seconds + cfg.warmup_seconds, 1500, cfg.batch_size)
    refs = [("default", "default", "random")]
    if "optimal_local" in cfg.variants:
        refs.append(("local_optimal", "optimal_local", "block"))
    return [
        PlannedRun(
            f"reference {name}", "reference", v, sampler,
            partial(
                run_reference, scenes.images(v), scenes.masks(v), name, length=ref_len,
                seed=cfg.seed, min_seconds=cfg.seconds, patch_size=cfg.patch_size,
                batch_size=cfg.batch_size, warmup_seconds=cfg.warmup_seconds,
                warmup_covers_startup=True,
            ),
            scenes.patch[v],
            {"reference_config": name},
        )
        for name, v, sampler in refs
    ]  # fmt: skip


def _ocog_runs(scenes: _Scenes) -> list[PlannedRun]:
    """Our engine per variant and sampler: plain (in the source dtype and in each of
    `out_dtypes`: the toolkit's loader hands out float32), and reusing tiles `best_reuse`
    times."""
    cfg = scenes.cfg
    out = []
    for v in cfg.variants:
        for s in cfg.samplers:
            plain = [(1, dt) for dt in (None, *cfg.out_dtypes)]
            for reuse, dtype in plain + ([(cfg.best_reuse, None)] if cfg.best_reuse > 1 else []):
                sc = replace(scenes.stream_config(s, reuse), dtype=dtype)
                run = partial(
                    run_ocog, scenes.images(v), scenes.masks(v), sc, min_seconds=cfg.seconds,
                    warmup_seconds=cfg.warmup_seconds, warmup_covers_startup=True,
                )  # fmt: skip
                label = (f"ocog {s}" + (f" reuse x{reuse}" if reuse > 1 else "")
                         + (f" {dtype}" if dtype else "")
                         + (" channels_last" if cfg.channels_last else ""))  # fmt: skip
                out.append(PlannedRun(label, "ocog", v, s, run, scenes.patch[v], config_dict(sc)))
    return out


def _scaling_runs(scenes: _Scenes) -> list[PlannedRun]:
    """The cores sweep (`CompareConfig.scaling_settings`): per variant, sampler and setting
    a plain ocog row in the source dtype, named by its threads (and workers), recording the
    cores it may use: threads x processes, capped at the machine's."""
    cfg = scenes.cfg
    cores = os.cpu_count() or 1
    out = []
    for v in cfg.variants:
        for s in cfg.samplers:
            for threads, workers in cfg.scaling_settings():
                sc = replace(scenes.stream_config(s, 1), threads=threads, workers=workers)
                run = partial(
                    run_ocog, scenes.images(v), scenes.masks(v), sc, min_seconds=cfg.seconds,
                    warmup_seconds=cfg.warmup_seconds, warmup_covers_startup=True,
                )  # fmt: skip
                label = f"ocog {s} threads {threads}" + (f" workers {workers}" if workers else "")
                config = {**config_dict(sc), "scaling": True, "machine_cores": cores,
                          "cores_used": min(cores, threads * max(1, workers))}  # fmt: skip
                out.append(PlannedRun(label, "ocog", v, s, run, scenes.patch[v], config))
    return out


def _set_scaling(rows: list[BenchRow]) -> None:
    """Sweep rows: samples/s per core, and the scaling efficiency against the 1-core row of
    the same variant and sampler (samples/s / (cores used x the 1-core row's samples/s))."""
    sweep = [r for r in rows if r.config.get("scaling")]
    base: dict[tuple[str, str], float] = {}
    for r in sweep:  # the first 1-core row: the baseline setting comes first
        if r.config["cores_used"] == 1:
            base.setdefault((r.variant, r.sampler), r.samples_per_s)
    for row in sweep:
        cores, one = row.config["cores_used"], base.get((row.variant, row.sampler))
        row.config = {
            **row.config,
            "samples_per_s_per_core": row.samples_per_s / cores,
            "scaling_efficiency": row.samples_per_s / (cores * one) if one else None,
        }


def format_scaling(result: Comparison) -> str:
    """The sweep's rows as a table of their own ("" without a sweep): cores used,
    samples/s, per core, and the efficiency against the 1-core row."""
    sweep = [r for r in result.rows if r.config.get("scaling")]
    if not sweep:
        return ""
    head = ("name", "variant", "cores", "samples/s", "per core", "efficiency")
    table = [head] + [
        (r.name, r.variant, str(r.config["cores_used"]), f"{r.samples_per_s:.0f}",
         f"{r.config['samples_per_s_per_core']:.0f}",
         "-" if r.config["scaling_efficiency"] is None else f"{r.config['scaling_efficiency']:.2f}")
        for r in sweep
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in table]  # fmt: skip
    machine = sweep[0].config["machine_cores"]
    return f"scaling with cores (this machine: {machine}):\n" + "\n".join(lines)


def _limit_rows(scenes: _Scenes, say: Callable[[str], None]) -> dict[tuple[str, str], BenchRow]:
    """Limits for the same windows each sampler draws (decode; memory for uncompressed)."""
    cfg = scenes.cfg
    limits: dict[tuple[str, str], BenchRow] = {}
    for v in cfg.variants:
        r0 = open_raster(scenes.images(v)[0])
        compressed = r0.fast and r0.index.compression != 1
        kind = "decode_limit" if compressed else "memory_limit"
        for s in cfg.samplers:
            say(f"limit: {s} on {v}")
            one = _decode_limit(scenes, v, s) if compressed else _memory_limit(scenes, v, r0)
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
                    "with_masks": bool(scenes.masks(v)),
                },
            )
    return limits


def _decode_limit(scenes: _Scenes, variant: str, sampler: str) -> Callable:
    from ocog_lib.bench.limits import decode_limit

    cfg, images = scenes.cfg, scenes.images(variant)
    b = cfg.batch_size
    sc = replace(scenes.stream_config(sampler, 1), length=128 // b * b or b)
    wins = CogStream(images, None, sc).windows
    return partial(
        decode_limit, images, wins, cfg.patch_size, threads=scenes.threads,
        min_seconds=cfg.seconds / 2, masks=scenes.masks(variant) or None,
    )  # fmt: skip


def _memory_limit(scenes: _Scenes, variant: str, r0) -> Callable:
    from ocog_lib.bench.limits import memory_limit

    cfg = scenes.cfg
    return partial(
        memory_limit, scenes.images(variant), cfg.patch_size, r0.bands, r0.dtype.itemsize,
        threads=scenes.threads, min_seconds=cfg.seconds / 2,
        mask_itemsize=1 if scenes.masks(variant) else 0,  # uint8 class masks
    )  # fmt: skip


def _attach_data_wait(rows: list[BenchRow], scenes: _Scenes, say: Callable[[str], None]) -> None:
    """Data-wait for the reference configs and our fastest row, at the same step time."""
    cfg = scenes.cfg
    ours = [i for i, r in enumerate(rows) if r.loader == "ocog" and not r.config.get("scaling")]
    picks = [i for i, r in enumerate(rows) if r.loader == "reference"]
    if ours:
        picks.append(max(ours, key=lambda i: rows[i].samples_per_s))
    n = max(20, int(cfg.seconds * 1000 / cfg.step_ms)) + 4
    for i in picks:
        row = rows[i]
        say(f"data-wait at {cfg.step_ms:g} ms/step: {row.name} on {row.variant}")
        make = _loader_of(row, scenes, length=n * cfg.batch_size)
        row.data_wait_fraction = data_wait(make, step_ms=cfg.step_ms, seconds=cfg.seconds)
        row.config = {**row.config, "data_wait_step_ms": cfg.step_ms}


def _loader_of(row: BenchRow, scenes: _Scenes, *, length: int) -> Callable:
    """A maker of the row's loader, as measured, for `length` windows."""
    cfg = scenes.cfg
    images, masks = scenes.images(row.variant), scenes.masks(row.variant)
    if row.loader == "reference":
        from ocog_lib.bench.reference import REFERENCE_CONFIGS, make_reference_loader

        rc = replace(
            REFERENCE_CONFIGS[row.config["reference_config"]],
            patch_size=cfg.patch_size,
            batch_size=cfg.batch_size,
        )
        return partial(
            make_reference_loader, images, rc, length=length, seed=cfg.seed,
            mask_paths=masks or None,
        )  # fmt: skip
    sc = config_from_row(row.config, length)
    return lambda: CogStream(images, masks or None, sc).loader()


def _set_ratios(rows: list[BenchRow], limits: dict[tuple[str, str], BenchRow]) -> None:
    ref = next(r for r in rows if r.name == "reference default")
    for row in rows:
        row.ratio_vs_reference_default = row.samples_per_s / ref.samples_per_s
        lim = limits.get((row.variant, row.sampler))
        if lim is not None and row.loader not in LIMIT_LOADERS:
            row.ratio_vs_limit = row.samples_per_s / lim.samples_per_s
        if lim is not None and row.loader == "ocog":
            _set_cache_limit(row, lim)


def _set_cache_limit(row: BenchRow, lim: BenchRow) -> None:
    """The row against the fewest decodes its windows need (bench.cache_limit) at the decode
    limit's tiles/s; an uncompressed variant decodes nothing, so its limit is the memory
    limit."""
    if lim.loader == "memory_limit":
        sps = lim.samples_per_s
    else:
        tiles_per_s = lim.samples_per_s * lim.config["tiles_per_sample"]
        fewest = row.config.get("min_decodes_per_sample")
        sps = tiles_per_s / fewest if fewest else None
    if sps:
        row.ratio_vs_cache_limit = row.samples_per_s / sps
        row.config = {**row.config, "cache_limit_sps": sps}


def bench_stream(
    dataset: str,
    variant: str,
    engine: StreamConfig,
    *,
    seconds: float,
    length: int = 0,
    step_ms: float = 0.0,
    settings: Settings | None = None,
) -> StreamRun:
    """`ocog bench stream`: one configuration of our engine on a variant's bench scenes.

    `length` (windows per epoch; 0 = enough for `seconds`) replaces `engine.length`;
    `step_ms` > 0 also measures data-wait behind a consumer taking that long per batch.
    """
    settings = settings or Settings.from_env()
    images, masks = bench_files(dataset, variant, settings)
    content = variant_content_hash(dataset, variant, settings)
    b = engine.batch_size
    sc = replace(engine, length=length or int(max(2000, 4000 * (seconds + 3)) // b * b))
    m = run_ocog(images, masks, sc, min_seconds=seconds)
    r = open_raster(images[0])
    pb = patch_bytes(len(sc.bands) if sc.bands else r.bands, sc.patch_size, r.dtype.itemsize)
    config = config_dict(sc)
    wait = None
    if step_ms > 0:
        wait = _stream_data_wait(images, masks, sc, seconds=seconds, step_ms=step_ms)
        config["step_ms"] = step_ms
    row = StreamRow(
        name="ocog",
        samples_per_s=m.samples_per_s,
        mb_per_s=m.samples_per_s * pb / 1e6,
        startup_s=m.startup_s,
        cache_hit_rate=m.cache_hit_rate,
        batch_mix=m.batch_mix,
        peak_rss_mb=m.peak_rss_mb,
        samples=m.samples,
        seconds=m.seconds,
        config=config,
        variant=variant,
        sampler=sc.sampler,
        loader="ocog",
        data_wait_fraction=wait,
        content_hash=content,
    )
    return StreamRun(uuid.uuid4().hex[:12], dataset, row, step_ms)


def _stream_data_wait(
    images: list[str], masks: list[str], sc: StreamConfig, *, seconds: float, step_ms: float
) -> float:
    from ocog_lib.bench.consumer import measure_data_wait

    stream = CogStream(images, masks or None, sc)
    dw = measure_data_wait(
        stream.loader(),
        step_seconds=step_ms / 1000,
        n_steps=max(10, int(seconds * 1000 / step_ms)),
    )
    stream.close()
    return dw.data_wait_fraction
