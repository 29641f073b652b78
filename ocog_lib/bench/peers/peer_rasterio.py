"""Tuned rasterio: what a careful user builds with rasterio and a torch DataLoader.

Unlike the OCOG toolkit's loader (`bench.reference`, a file opened per sample, GDAL left at
its defaults), each DataLoader worker process keeps one rasterio handle per file, opened in
that worker on its first read (never before the fork), and GDAL is tuned:
GDAL_NUM_THREADS=ALL_CPUS (a window spanning several tiles decodes them in parallel) and
GDAL_CACHEMAX, the comparison's cache budget split evenly over the workers and given in
bytes (GDAL reads a value under 100000 as MB, and `rasterio.Env(GDAL_CACHEMAX=512)` as 512
bytes); the driver reads back what GDAL applied (`peer_kit.gdal_cache_bytes`). A worker
reads a whole batch (`__getitems__`, no per-sample collate) with windowed reads of exactly
ocog's windows, into one array of the file's dtype, as ocog's batches are. Processes, not
threads: one worker per core (the comparison's thread budget), 2 batches prefetched each,
persistent. Runs in the project's venv (rasterio and torch are the project's own).
"""

from __future__ import annotations

import os

NAME = "tuned rasterio"
VERSION = None  # the project's rasterio: the driver reports its version and GDAL's
PACKAGES: tuple[str, ...] = ()  # the project's venv
PYTHON = None
USES_GDAL = True
SAMPLERS = ("random", "block", "grid")
SAMPLER_AS_RUN = "ocog's windows"
PREFETCH = 2
IMPORTS = ("torch.utils.data", "rasterio")  # imported before the loader is made (import_s)
CONCURRENCY = (
    "torch DataLoader, {workers} worker processes x 2 batches prefetched, a batch "
    "per worker read; GDAL_NUM_THREADS=ALL_CPUS in each"
)
CACHE = None  # GDAL's block cache: the comparison's budget split over the workers (catalog)


class WindowReads:
    """Map-style dataset over window indices; `__getitems__` reads a batch in one go."""

    def __init__(self, images: list[str], masks: list[str], windows, patch: int):
        self.images, self.masks = images, masks
        self.windows, self.patch = windows, patch
        self._handles: dict = {}
        self._pid = -1

    def __len__(self) -> int:
        return len(self.windows)

    def _open(self, path: str):
        import rasterio

        if self._pid != os.getpid():  # a new worker: never reuse a handle across a fork
            self._handles, self._pid = {}, os.getpid()
        src = self._handles.get(path)
        if src is None:
            src = self._handles[path] = rasterio.open(path)
        return src

    def _read(self, paths: list[str], idx: list[int], bands: list[int] | None):
        import numpy as np
        from rasterio.windows import Window

        p = self.patch
        first = self._open(paths[int(self.windows[idx[0], 0])])
        count = len(bands) if bands else first.count
        out = np.empty((len(idx), count, p, p), dtype=first.dtypes[0])
        for k, i in enumerate(idx):
            f, row, col = (int(v) for v in self.windows[i])
            src = self._open(paths[f])
            src.read(bands or None, out=out[k], window=Window(col, row, p, p))
        return out

    def __getitems__(self, idx: list[int]):
        import torch

        image = torch.from_numpy(self._read(self.images, idx, None))
        if not self.masks:
            return image
        return image, torch.from_numpy(self._read(self.masks, idx, [1]))

    def __getitem__(self, i: int):
        return self.__getitems__([i])


def _identity(batch):
    return batch


def open_loader(job: dict):
    """The DataLoader over the job's windows in order, and the GDAL settings it runs under."""
    import warnings

    from peer_kit import LoaderBatches, batch_slices, gdal_facts, windows
    from torch.utils.data import DataLoader

    warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)
    wins = windows(job)
    data = WindowReads(job["images"], job["masks"], wins, job["patch_size"])
    workers = job["workers"]
    loader = DataLoader(
        data, batch_sampler=[list(r) for r in batch_slices(len(wins), job["batch_size"])],
        collate_fn=_identity, num_workers=workers,
        prefetch_factor=PREFETCH if workers > 0 else None, persistent_workers=workers > 0,
    )  # fmt: skip
    return LoaderBatches(loader), {**gdal_facts(), "workers": workers}
