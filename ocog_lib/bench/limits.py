"""What the hardware allows: the ceilings every loader is measured against.

- decode limit: for each sample, the tiles its window needs, decoded by the same codec
  library the engine uses (imagecodecs), on all cores, with no per-patch Python work,
  no IPC and no cache. Compressed bytes are read into memory first, so only decoding
  is timed. A sample that needs 2.25 tiles on average costs 2.25 decodes here. A sample
  is its window's bands plus its mask where the loaders stream masks, so the mask tiles
  of each window are decoded too.
- memory limit (uncompressed variants): the rate at which all cores copy file bytes
  from the page cache into an aligned buffer, expressed in patches per second.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ocog_lib.cog.decode import decode_tile
from ocog_lib.cog.tiff_index import TiffIndex, parse_tiff
from ocog_lib.storage import open_source


@dataclass(frozen=True)
class LimitResult:
    kind: str  # "decode" or "memory"
    samples_per_s: float
    mb_per_s: float  # decoded patch bytes (source dtype) per second
    tiles_per_sample: float
    threads: int
    seconds: float


def _tiles_for(index: TiffIndex, row: int, col: int, patch: int) -> list[tuple[int, int]]:
    """(offset, byte count) of every stored tile a patch x patch window needs, plane by plane."""
    planes = index.bands if index.planar == 2 else 1
    tiles = index.grid.window_tiles(row, col, patch, patch)
    return [index.tile_entry(0, pl, ty, tx) for pl in range(planes) for ty, tx in tiles]


def decode_limit(
    paths: list[str],
    windows: np.ndarray,
    patch: int,
    *,
    threads: int | None = None,
    min_seconds: float = 2.0,
    masks: list[str] | None = None,
) -> LimitResult:
    """Samples/s if decoding the tiles each window needs (image and mask) were the only work."""
    threads = threads or os.cpu_count() or 1
    if masks and len(masks) != len(paths):
        raise ValueError(f"{len(masks)} masks for {len(paths)} images")
    files = [*paths, *(masks or [])]
    sources = [open_source(p) for p in files]
    indices = [parse_tiff(s) for s in sources]
    jobs: list[tuple[int, bytes]] = []  # (file, compressed tile) for every tile of every sample
    blobs: dict[tuple[int, int], bytes] = {}
    for fid, row, col in windows.tolist():
        for f in (fid, fid + len(paths)) if masks else (fid,):
            for off, n in _tiles_for(indices[f], row, col, patch):
                key = (f, off)
                if key not in blobs:
                    blobs[key] = sources[f].read(off, n)
                jobs.append((f, blobs[key]))
    n_samples = len(windows)
    tiles_per_sample = len(jobs) / max(1, n_samples)  # mask tiles included

    def run(chunk: list[tuple[int, bytes]]) -> None:
        # the engine's own decompress + predictor path, in the stored layout (no transpose)
        for fid, raw in chunk:
            decode_tile(indices[fid], raw, band_first=False)

    # contiguous runs, not a stride: with masks, jobs alternate image / mask tile, and a
    # stride of 2 would hand every image tile to one thread and every mask tile to the other
    per = -(-len(jobs) // threads)
    chunks = [jobs[i * per : (i + 1) * per] for i in range(threads)]
    rounds = 0
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        while True:
            list(pool.map(run, chunks))
            rounds += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
    sps = rounds * n_samples / elapsed
    patch_bytes = patch * patch * indices[0].bands * indices[0].dtype.itemsize
    return LimitResult("decode", sps, sps * patch_bytes / 1e6, tiles_per_sample, threads, elapsed)


def memory_limit(
    paths: list[str],
    patch: int,
    bands: int,
    itemsize: int,
    *,
    threads: int | None = None,
    min_seconds: float = 2.0,
    chunk: int = 4 << 20,
    mask_itemsize: int = 0,
) -> LimitResult:
    """Patches/s if a patch cost only its bytes copied from the page cache (all cores)."""
    threads = threads or os.cpu_count() or 1
    fds = [os.open(p, os.O_RDONLY) for p in paths]
    sizes = [os.fstat(fd).st_size for fd in fds]
    try:

        def run(t: int) -> int:
            buf = np.empty(chunk, dtype=np.uint8)  # page-aligned by numpy for large arrays
            view = memoryview(buf)
            copied = 0
            deadline = time.perf_counter() + min_seconds
            i = t
            while time.perf_counter() < deadline:
                f = i % len(fds)
                off = (i * chunk) % max(1, sizes[f] - chunk)
                copied += os.preadv(fds[f], [view], off)
                i += threads
            return copied

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            total = sum(pool.map(run, range(threads)))
        elapsed = time.perf_counter() - start
    finally:
        for fd in fds:
            os.close(fd)
    mb_s = total / elapsed / 1e6
    patch_bytes = patch * patch * (bands * itemsize + mask_itemsize)  # a mask where streamed
    return LimitResult("memory", mb_s * 1e6 / patch_bytes, mb_s, 0.0, threads, elapsed)
