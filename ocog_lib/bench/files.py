"""`ocog bench files`: the first batch over many small COGs, with and without the header
index.

Archives are many files: a loader that parses every header before its first batch pays
one header read per file per run. Per file count (1 .. 1e4 by default) this opens the
first n of a folder of generated COGs (256 x 256 x 4 uint16, ZSTD + predictor 2, one
256-px tile: small scenes, made once under $OCOG_DATA_DIR/bench_files and reused) three
ways, each in this process: `cold` (no index: every header parsed), `build` (an empty
index, written at the end) and `warm` (that index: no header read). A row: time to the
first batch (headers, windows, plan and the first batch), header bytes read, index hits.
The same files from S3 through the WAN shaper: `files_remote` (`--remote`).
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ocog_lib.atomic import atomic_path
from ocog_lib.bench.rows import StreamRow, format_rows
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings
from ocog_lib.stream.config import StreamConfig

COUNTS = (1, 10, 100, 1000, 10000)
MODES = ("cold", "build", "warm")
FILE_PX = 256


@dataclass(frozen=True)
class FilesBenchConfig:
    counts: tuple[int, ...] = COUNTS  # files per row
    patch_size: int = 64
    batch_size: int = 32
    # from S3 through the WAN shaper (files_remote), the same link as `bench compare --remote`
    remote: bool = False
    rtt_ms: float = 30.0
    cap_mb_s: float = 100.0
    bucket: str | None = None  # None: $OCOG_S3_BUCKET (default "ocog"), see remote.session
    upload_threads: int = 16  # PUTs in flight when the bucket lacks some of the files

    def __post_init__(self) -> None:
        if not self.counts or any(not isinstance(n, int) or n < 1 for n in self.counts):
            raise InputError(f"counts {self.counts}", "give one or more file counts >= 1")
        if not 1 <= self.patch_size <= FILE_PX:
            raise InputError(f"patch_size {self.patch_size}", f"must be 1..{FILE_PX} px")
        if self.rtt_ms < 0 or not self.cap_mb_s > 0 or self.upload_threads < 1:
            raise InputError(f"rtt_ms {self.rtt_ms}, cap_mb_s {self.cap_mb_s}, upload_threads "
                             f"{self.upload_threads}", "need rtt >= 0, cap > 0, threads >= 1")

    @property
    def storage(self) -> str:
        return "remote" if self.remote else "local"


@dataclass(frozen=True)
class FilesRun:
    run_id: str
    config: FilesBenchConfig
    rows: tuple[StreamRow, ...]
    upload: dict | None = None  # remote: objects, how many were put this run, seconds

    def to_dict(self) -> dict:
        out = {"run_id": self.run_id, "dataset": "bench_files", "storage": self.config.storage,
               "files": asdict(self.config), "rows": [asdict(r) for r in self.rows]}  # fmt: skip
        if self.upload is not None:
            out["upload"] = self.upload
        return out


def bench_files_folder(settings: Settings, count: int, progress=None) -> list[str]:
    """The first `count` generated COGs (made when missing, each written atomically)."""
    folder = Path(settings.data_dir) / "bench_files"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"f{i:05d}.tif" for i in range(count)]
    missing = [p for p in paths if not p.exists()]
    if missing and progress:
        progress(f"writing {len(missing)} small COGs to {folder}")
    for p in missing:
        rng = np.random.default_rng(int(p.stem[1:]))
        pixels = rng.integers(0, 10000, (4, FILE_PX, FILE_PX), dtype=np.uint16)
        _write_small_cog(p, pixels)
    return [str(p) for p in paths]


def _write_small_cog(path: Path, pixels: np.ndarray) -> None:
    import rasterio
    from rasterio.transform import from_origin

    bands, h, w = pixels.shape
    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", driver="COG", width=w, height=h, count=bands,
                           dtype=pixels.dtype, crs="EPSG:32618", compress="ZSTD",
                           predictor=2, blocksize=FILE_PX, overviews="NONE",
                           transform=from_origin(500000, 4100000, 10, 10)) as ds:  # fmt: skip
            ds.write(pixels)


def bench_many_files(cfg: FilesBenchConfig, settings: Settings | None = None,
                     progress=None) -> FilesRun:  # fmt: skip
    """Per count, the cold, build and warm rows (see the module); from S3:
    `files_remote.bench_remote_files`."""
    if cfg.remote:
        raise InputError("FilesBenchConfig(remote=True)", "run it with bench_remote_files")
    settings = settings or Settings.from_env()
    rows = []
    for n in sorted(cfg.counts):
        paths = bench_files_folder(settings, n, progress)
        with tempfile.TemporaryDirectory(dir=Path(paths[0]).parent) as scratch:
            index = Path(scratch) / "headers.duckdb"  # its lock file goes with the folder
            for mode in MODES:
                if progress:
                    progress(f"{n} files, {mode}")
                rows.append(first_batch_row(paths, cfg, mode, None if mode == "cold" else index))
    return FilesRun(uuid.uuid4().hex[:12], cfg, tuple(rows))


def first_batch_row(paths: list[str], cfg: FilesBenchConfig, mode: str, index: Path | None,
                    wire: Callable | None = None) -> StreamRow:  # fmt: skip
    """One row: open `paths` (URIs too) on `index` and take the first batch. `wire`: the
    shaper's counters (remote), read before, after the open and after the first batch."""
    from ocog_lib.stream.dataset import CogStream

    sc = StreamConfig(patch_size=cfg.patch_size, batch_size=cfg.batch_size,
                      length=cfg.batch_size * 4,
                      header_index=None if index is None else str(index))  # fmt: skip
    marks = [wire()] if wire else []
    t0 = time.perf_counter()
    stream = CogStream(paths, None, sc)
    try:
        opened = time.perf_counter() - t0
        marks += [wire()] if wire else []
        batch = next(iter(stream.loader()))
        first = time.perf_counter() - t0
        marks += [wire()] if wire else []
    finally:
        stream.close()
    st = stream.open_stats
    config = {"files": len(paths), "mode": mode, "open_s": opened, "first_batch_s": first,
              "header_bytes": st.header_bytes_fetched, "index_hits": st.hits,
              "index_stale": st.stale, "probe_requests": st.probe_requests,
              "patch_size": cfg.patch_size, "batch_size": cfg.batch_size}  # fmt: skip
    if marks:  # what crossed the link: the open (headers or version checks), to the batch
        opening, total = marks[1] - marks[0], marks[2] - marks[0]
        config |= {"wire_bytes_open": opening.bytes_down, "requests_open": opening.requests,
                   "wire_bytes_first_batch": total.bytes_down,
                   "requests_first_batch": total.requests, "rtt_ms": cfg.rtt_ms,
                   "cap_mb_s": cfg.cap_mb_s}  # fmt: skip
    n = int(batch["image"].shape[0])
    return StreamRow(name=f"ocog files {len(paths)} {mode}", samples_per_s=0.0, mb_per_s=0.0,
                     startup_s=first, cache_hit_rate=None, batch_mix=None, peak_rss_mb=0.0,
                     samples=n, seconds=first, config=config, variant="bench_files",
                     sampler=sc.sampler, loader="ocog")  # fmt: skip


def format_files(run: FilesRun) -> str:
    """The rows: first batch (start s), header bytes, index hits (remote: a line naming the
    link, and the bytes and requests the open sent over it)."""
    rows = run.to_dict()["rows"]
    if not run.config.remote:
        return format_rows(rows, extra=("files", "header_bytes", "index_hits"))
    c = run.config
    extra = ("files", "header_bytes", "index_hits", "index_stale", "wire_bytes_open",
             "requests_open")  # fmt: skip
    up = run.upload or {}
    return (f"storage remote: S3 through the shaper, RTT {c.rtt_ms:g} ms, cap "
            f"{c.cap_mb_s:g} MB/s; {up.get('put', 0)} of {up.get('objects', 0)} objects put "
            f"({up.get('seconds', 0.0):.1f} s)\n" + format_rows(rows, extra=extra))
