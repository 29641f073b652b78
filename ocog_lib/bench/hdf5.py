"""HDF5 streaming rows for `ocog bench compare`: the same patches, the same CPU budget.

For each sampler of a `CompareConfig`, a package is exported holding the first `samples`
windows of exactly the window sequence the engine's plain row streams (same sampler, seed,
patch size and length), cut from the default variant (lossless, so the pixels of every
lossless variant) of the benchmark scenes. Each package is then read back through
`Hdf5Dataset` and a torch DataLoader in sample order, epoch after epoch for the timed span,
with as many worker processes as the CPU budget has cores (h5py serializes reads within a
process, so parallelism has to come from processes). Repeats are interleaved and medians
reported, as in `ocog_lib.bench.local.compare` (the same `plan`); rows have `loader="hdf5"`
and `variant="hdf5_<compression>"`.

Packages are kept under `data/hdf5/bench/<dataset>/` and reused while their inputs are
unchanged (export skips on a matching fingerprint); `compare --remote` uploads them to the
same path in the bucket (`s3://<bucket>/hdf5/bench/<dataset>/`, `remote_key_prefix`). A
remote package (s3://, http(s)://) is measured with `measure_package(uri, ...)`: the same
dataset, read by byte ranges.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from ocog_lib.bench.config import CompareConfig, Hdf5BenchConfig
from ocog_lib.bench.local import compare
from ocog_lib.bench.measure import Measurement, data_wait, length_for, measure
from ocog_lib.bench.plan import PlannedRun, run_interleaved
from ocog_lib.bench.rows import BenchRow, Comparison
from ocog_lib.data.locate import bench_files
from ocog_lib.env import gdal_cache_of_config
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings

SOURCE_VARIANT = "default"
PACKAGES_DIR = ("hdf5", "bench")  # under the data directory, and as a key prefix remotely


def remote_key_prefix(dataset: str) -> str:
    """Where `compare --remote` keeps a dataset's packages in the bucket: the same path
    as their local folder under the data directory."""
    return "/".join((*PACKAGES_DIR, dataset))


def _batches(make_loader: Callable[[], Any]) -> Iterator:
    """Epoch after epoch of one loader (persistent workers: no restart between epochs)."""
    dl = make_loader()
    while True:
        yield from dl


def measure_package(
    uri: str | os.PathLike[str],
    *,
    batch_size: int = 32,
    workers: int = 0,
    seconds: float = 4.0,
    prefetch: int = 2,
    start_method: str | None = None,
    source_opts: dict[str, Any] | None = None,
    warmup_seconds: float = 0.0,
    warmup_covers_startup: bool = False,
    probe: Callable[[], float] | None = None,
) -> Measurement:
    """Steady-state samples/s of a package (local or remote) read in sample order."""
    from ocog_lib.hdf5.dataset import Hdf5Dataset, loader

    ds = Hdf5Dataset(uri, "all", source_opts=source_opts)
    workers = workers or (os.cpu_count() or 1)
    gen = _batches(
        lambda: loader(
            ds,
            batch_size=batch_size,
            workers=workers,
            prefetch=prefetch,
            start_method=start_method,
            persistent_workers=True,
        )
    )
    try:
        return measure(
            gen,
            min_seconds=seconds,
            warmup_seconds=warmup_seconds,
            warmup_covers_startup=warmup_covers_startup,
            probe=probe,
        )
    finally:
        gen.close()  # ends the loader; its workers exit with it
        ds.close()


def bench_package(
    dataset: str,
    sampler: str,
    compression: str,
    cfg: CompareConfig,
    hcfg: Hdf5BenchConfig,
    settings: Settings,
    progress: Callable[[str], None] | None = None,
):
    """The package of one sampler and compression (exported, or reused when up to date)."""
    from ocog_lib.hdf5.export import ExportConfig, SourceScene, export_hdf5
    from ocog_lib.stream.config import StreamConfig
    from ocog_lib.stream.dataset import CogStream

    images, masks = bench_files(dataset, SOURCE_VARIANT, settings)
    masks = masks if cfg.with_masks else []
    # the engine's plain row for this sampler draws exactly these windows (bench.compare)
    engine = StreamConfig(
        sampler=sampler,
        patch_size=cfg.patch_size,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        length=length_for(cfg.seconds, 4000, cfg.batch_size),
    )
    windows = CogStream(images, None, engine).windows[: hcfg.samples]
    work = hcfg.work_dir or settings.data_dir.joinpath(*PACKAGES_DIR, dataset)
    name = f"data_{dataset}_{sampler}_{compression}_p{cfg.patch_size}_s{cfg.seed}.h5"
    scenes = [
        SourceScene(name=Path(img).stem, image=img, mask=masks[i] if masks else None)
        for i, img in enumerate(images)
    ]
    config = ExportConfig(
        patch_size=cfg.patch_size,
        compression=compression,
        seed=cfg.seed,
        split_guard=False,
        stats_samples=64,
        batch_size=cfg.batch_size,
        threads=cfg.threads,
    )
    return export_hdf5(
        scenes, work / name, config, windows=windows, dataset=dataset, progress=progress
    )


def remote_packages(
    cfg: CompareConfig,
    compressions: tuple[str, ...],
    hcfg: Hdf5BenchConfig,
    settings: Settings,
    upload: Callable[[Path, str], None],
    prefix: str,
    progress: Callable[[str], None] | None = None,
) -> list[tuple[str, str, Any]]:
    """(sampler, uri, export result) of packages exported locally and uploaded under prefix.

    The sidecars travel beside each .h5, as `Hdf5Dataset` fetches them from the same place.
    """
    say = progress or (lambda _msg: None)
    out = []
    for s in cfg.samplers:
        for comp in compressions:
            say(f"hdf5 package: {s} {comp}")
            pkg = bench_package(cfg.dataset, s, comp, cfg, hcfg, settings, say)
            uri = f"{prefix.rstrip('/')}/{pkg.path.name}"
            for path in (pkg.path, *pkg.sidecars.values()):
                say(f"upload {path.name}")
                upload(path, f"{prefix.rstrip('/')}/{path.name}")
            out.append((s, uri, pkg))
    return out


@gdal_cache_of_config
def hdf5_rows(
    cfg: CompareConfig,
    hcfg: Hdf5BenchConfig | None = None,
    settings: Settings | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[BenchRow]:
    """HDF5 rows for the samplers of `cfg`, each compression of `hcfg`; see the module doc."""
    hcfg = hcfg or Hdf5BenchConfig()
    settings = settings or Settings.from_env()
    say = progress or (lambda _msg: None)
    if hcfg.samples < cfg.batch_size:
        raise InputError(f"samples {hcfg.samples}", f"fewer than one batch of {cfg.batch_size}")
    workers = hcfg.workers or cfg.threads or (os.cpu_count() or 1)
    plan, packages = [], []
    for s in cfg.samplers:
        for comp in hcfg.compressions:
            say(f"hdf5 package: {s} {comp}")
            pkg = bench_package(cfg.dataset, s, comp, cfg, hcfg, settings, say)
            packages.append(pkg)
            plan.append(_local_run(cfg, hcfg, s, comp, pkg, workers))
    results = run_interleaved(plan, cfg.repeats, say)
    rows = [run.row(ms) for run, ms in zip(plan, results, strict=True)]
    if cfg.step_ms > 0 and rows:
        best = max(range(len(rows)), key=lambda i: rows[i].samples_per_s)
        row, pkg = rows[best], packages[best]
        say(f"data-wait at {cfg.step_ms:g} ms/step: {row.name}")
        make = partial(_package_batches, pkg.path, cfg.batch_size, workers, hcfg)
        row.data_wait_fraction = data_wait(make, step_ms=cfg.step_ms, seconds=cfg.seconds)
        row.config = {**row.config, "data_wait_step_ms": cfg.step_ms}
    return rows


def _local_run(
    cfg: CompareConfig, hcfg: Hdf5BenchConfig, sampler: str, comp: str, pkg, workers: int
) -> PlannedRun:
    run = partial(
        measure_package, pkg.path, batch_size=cfg.batch_size, workers=workers,
        seconds=cfg.seconds, prefetch=hcfg.prefetch, start_method=hcfg.start_method,
        warmup_seconds=cfg.warmup_seconds, warmup_covers_startup=True,  # as the COG rows
    )  # fmt: skip
    config = {
        "compression": comp,
        "workers": workers,
        "batch_size": cfg.batch_size,
        "prefetch": hcfg.prefetch,
        "samples": pkg.samples,
        "package": str(pkg.path),
        "h5_bytes": pkg.h5_bytes,
        "ratio_to_cog_bytes": pkg.ratio_to_cog_bytes,
        "source_variant": SOURCE_VARIANT,
        "storage": "local",
    }
    name = f"hdf5 {comp} {sampler}"
    return PlannedRun(name, "hdf5", f"hdf5_{comp}", sampler, run, pkg.image_bytes_per_sample,
                      config, title=name, content_hash=pkg.content_hash)  # fmt: skip


def _package_batches(path: Path, batch_size: int, workers: int, hcfg: Hdf5BenchConfig):
    from ocog_lib.hdf5.dataset import Hdf5Dataset, loader

    ds = Hdf5Dataset(path, "all")
    return _batches(
        lambda: loader(
            ds,
            batch_size=batch_size,
            workers=workers,
            prefetch=hcfg.prefetch,
            persistent_workers=True,
            start_method=hcfg.start_method,
        )
    )


def add_hdf5_rows(result: Comparison, rows: list[BenchRow]) -> Comparison:
    """A `bench.compare` result with HDF5 rows appended, their ratio to the reference
    default set."""
    return result.with_rows(rows)


def compare_with_hdf5(
    cfg: CompareConfig,
    settings: Settings | None = None,
    progress: Callable[[str], None] | None = None,
    hcfg: Hdf5BenchConfig | None = None,
) -> Comparison:
    """`ocog bench compare --hdf5`: the comparison, then HDF5 rows of the same patches."""
    settings = settings or Settings.from_env()
    result = compare(cfg, settings, progress=progress)
    return add_hdf5_rows(result, hdf5_rows(cfg, hcfg, settings, progress))
