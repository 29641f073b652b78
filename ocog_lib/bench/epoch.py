"""`ocog bench epoch`: does the engine's start depend on the epoch's length?

One engine configuration on a variant's bench scenes at each epoch length (1e4 .. 1e9
windows): time to the first batch (making the loader, its windows and plan, then the
first batch), the process's RSS over what it held before, and the steady samples/s that
follow. A user measured the old whole-epoch plan at 101-105 s and +2.8 to +10.8 GB
before the first batch of 1e7 windows; the goal is <= 1 s and <= 100 MB at any length.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, replace

import psutil

from ocog_lib.bench.measure import config_dict, patch_bytes, run_ocog
from ocog_lib.bench.rows import StreamRow, format_rows
from ocog_lib.data.locate import bench_files, variant_content_hash
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings
from ocog_lib.stream.config import StreamConfig
from ocog_lib.stream.rasters import open_raster

LENGTHS = (10**4, 10**5, 10**6, 10**7, 10**8, 10**9)


@dataclass(frozen=True)
class EpochBenchConfig:
    lengths: tuple[int, ...] = LENGTHS  # windows per epoch, one row each
    variant: str = "default"
    seconds: float = 2.0  # timed after the first batch (steady samples/s)

    def __post_init__(self) -> None:
        if not self.lengths or any(not isinstance(n, int) or n < 1 for n in self.lengths):
            raise InputError(f"lengths {self.lengths}", "give one or more window counts >= 1")
        if not self.seconds > 0:
            raise InputError(f"seconds {self.seconds}", "must be positive")


@dataclass(frozen=True)
class EpochRun:
    run_id: str
    dataset: str
    config: EpochBenchConfig
    rows: tuple[StreamRow, ...]

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "dataset": self.dataset, "storage": "local",
                "epoch": asdict(self.config), "rows": [asdict(r) for r in self.rows]}  # fmt: skip


def bench_epochs(dataset: str, engine: StreamConfig, cfg: EpochBenchConfig,
                 settings: Settings | None = None, progress=None) -> EpochRun:  # fmt: skip
    """One row per epoch length, shortest first, in this process."""
    settings = settings or Settings.from_env()
    images, masks = bench_files(dataset, cfg.variant, settings)
    content = variant_content_hash(dataset, cfg.variant, settings)
    r = open_raster(images[0])
    pb = patch_bytes(len(engine.bands) if engine.bands else r.bands, engine.patch_size,
                     r.dtype.itemsize)  # fmt: skip
    rows = []
    for n in sorted(cfg.lengths):
        if progress:
            progress(f"epoch of {n:.0e} windows")
        sc = replace(engine, length=n)
        before = psutil.Process().memory_info().rss / 2**20
        m = run_ocog(images, masks, sc, min_seconds=cfg.seconds)
        first = (m.open_s or 0.0) + m.startup_s
        config = {**config_dict(sc), "length": n, "first_batch_s": first,
                  "open_s": m.open_s, "rss_before_mb": before,
                  "rss_delta_mb": m.peak_rss_mb - before}  # fmt: skip
        rows.append(StreamRow(
            name=f"ocog epoch {n:.0e}".replace("+0", ""), samples_per_s=m.samples_per_s,
            mb_per_s=m.samples_per_s * pb / 1e6, startup_s=first,
            cache_hit_rate=m.cache_hit_rate, batch_mix=m.batch_mix, peak_rss_mb=m.peak_rss_mb,
            samples=m.samples, seconds=m.seconds, config=config, variant=cfg.variant,
            sampler=sc.sampler, loader="ocog", content_hash=content))  # fmt: skip
    return EpochRun(uuid.uuid4().hex[:12], dataset, cfg, tuple(rows))


def format_epochs(run: EpochRun) -> str:
    """The rows, with the first batch (start s) and the RSS growth per length."""
    return format_rows(run.to_dict()["rows"], extra=("length", "rss_delta_mb"))
