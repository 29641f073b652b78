"""The benchmarks' configs: plain data, importable without torch (`ocog --help` reads
their defaults)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from ocog_lib.errors import InputError

# The same memory for everyone: GDAL's block cache (reference) = the engine's tile cache.
DEFAULT_CACHE_MB = 128
BEST_REUSE = 8  # windows per decoded tile for the "best" rows


@dataclass(frozen=True)
class CompareConfig:
    """`ocog bench compare` on local files (`local.compare`)."""

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
    # peer loaders (bench.peers: tuned rasterio, async-geotiff, rasteret, TorchGeo) measured
    # on the default variant with ocog's random windows, each in its own process; () = none
    peers: tuple[str, ...] = ()
    # beside each plain ocog row, the same in these output dtypes (the toolkit's loader
    # hands out float32: the like-for-like row); () = the source dtype only
    out_dtypes: tuple[str, ...] = ("float32",)
    # ocog's image batches in channels-last memory (StreamConfig.channels_last): its rows
    # are then named "... channels_last"
    channels_last: bool = False
    # scaling with cores: one more plain ocog row per sampler and setting (decode threads
    # per process x DataLoader processes, see `scaling_settings`); () and () = no sweep
    sweep_threads: tuple[int, ...] = ()
    sweep_workers: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if any(not isinstance(t, int) or t < 1 for t in self.sweep_threads):
            raise InputError(f"sweep_threads {self.sweep_threads}", "threads are counts >= 1")
        if any(not isinstance(w, int) or w < 0 for w in self.sweep_workers):
            raise InputError(f"sweep_workers {self.sweep_workers}",
                             "workers are counts >= 0 (0: threads in this process)")  # fmt: skip

    def scaling_settings(self) -> tuple[tuple[int, int], ...]:
        """(threads, workers) of the sweep: every pair of the two lists (threads 1 when
        only workers are swept, workers 0 when only threads are), the 1-core baseline
        (1 thread, the fewest workers) first; () without a sweep."""
        if not self.sweep_threads and not self.sweep_workers:
            return ()
        workers = tuple(dict.fromkeys(self.sweep_workers or (0,)))
        pairs = [(t, w) for w in workers for t in dict.fromkeys(self.sweep_threads or (1,))]
        baseline = (1, min(workers))
        return (baseline, *(p for p in pairs if p != baseline))

    @classmethod
    def quick(cls, **overrides) -> CompareConfig:
        return replace(cls(repeats=1, seconds=1.5), **overrides)


@dataclass(frozen=True)
class RemoteCompareConfig:
    """`ocog bench compare --remote`: from object storage, through the shaper
    (`remote.compare_remote`)."""

    dataset: str = "sample"
    variants: tuple[str, ...] = ("default", "optimal_local", "optimal_remote")
    samplers: tuple[str, ...] = ("random", "block")
    caps_mb_s: tuple[float, ...] = (100.0, 1000.0)
    rtt_ms: float = 30.0
    patch_size: int = 256
    batch_size: int = 32
    repeats: int = 1
    seconds: float = 8.0
    warmup_seconds: float = 3.0  # after the first batch: queues filled at start-up drain here
    cache_mb: float = 128.0
    # ocog rows per variant and sampler: plain (1 window per tile visit) and the engine's
    # default over remote sources (auto: samplers.link_reuse); best_reuse > 1 adds one more
    best_reuse: int = 0
    # also stream a variant whose tiles are the patch size (LERC_ZSTD, written if missing):
    # a plain window then fetches one tile of its own size, not 4x its area
    patch_sized_tiles: bool = True
    io_threads: int = 32
    channels_last: bool = False  # as CompareConfig.channels_last
    seed: int = 0
    # the toolkit's configs run against the remote files: default and remote-optimal
    reference_configs: tuple[str, ...] = ("default", "remote_optimal")
    bucket: str | None = None  # None: $OCOG_S3_BUCKET (default "ocog"), see remote.session
    # HDF5 packages of the same windows read by byte ranges (h5py over ocog's storage);
    # h5py reads one chunk at a time per process, so the workers are processes
    hdf5: tuple[str, ...] = ()  # compressions, e.g. ("gzip", "none"); () = no HDF5 rows
    hdf5_workers: int = 16
    hdf5_samples: int = 2048

    @classmethod
    def quick(cls, **overrides) -> RemoteCompareConfig:
        # the toolkit's 64-worker config needs minutes and ~10 GB here: full runs only
        quick = cls(
            seconds=3.0, warmup_seconds=2.0, caps_mb_s=(100.0,), reference_configs=("default",)
        )
        return replace(quick, **overrides)


@dataclass(frozen=True)
class Hdf5BenchConfig:
    """HDF5 rows beside a comparison's (`hdf5.hdf5_rows`)."""

    compressions: tuple[str, ...] = ("gzip", "lzf", "none")
    samples: int = 2048  # windows per package (0.5 MB decoded each at 4 x 256 px uint16)
    workers: int = 0  # DataLoader processes; 0 = the CPU budget (CompareConfig.threads or cores)
    prefetch: int = 2
    start_method: str | None = None  # None = the platform default (fork on Linux)
    work_dir: Path | None = None  # None = data/hdf5/bench/<dataset>
    extra: dict = field(default_factory=dict)
