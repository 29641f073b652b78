"""TorchGeo (PyPI `torchgeo`): RasterDataset + RandomGeoSampler, as its tutorials use them.

TorchGeo samples by geographic bounding boxes, not by pixel windows, so its windows are its
own: `RandomGeoSampler(dataset, size=patch, units=PIXELS, length=n, generator=seeded)`,
which picks a file by area and a box uniform within it, snapped to the pixel grid (the same
distribution as ocog's random sampler: uniform within each raster), read by
`RasterDataset.__getitem__` (rasterio.merge of every file the box intersects; handles kept
open per worker, its `cache=True`), returned as float32 (its image dtype). One
RasterDataset per file, so a box reads one file as an ocog window does: the bench scenes
share a footprint, and one dataset over all would merge two files per sample. Files are
visited in the order of ocog's windows, each file's own sampler drawing the box; masks,
where given, through TorchGeo's `IntersectionDataset` of the image with the mask
(`is_image = False`). A torch DataLoader with `stack_samples`, one worker process per core,
2 batches prefetched, GDAL settings as tuned rasterio's (the cache budget split over the
workers, GDAL_NUM_THREADS=ALL_CPUS). Random sampler only.

It needs torchvision, which does not load beside the project's torch (2.13.0+cpu: PyPI's
torchvision is built for PyPI's CUDA torch), so its venv takes a CPU torch/torchvision
pair from PyTorch's CPU wheel index (`CPU_INDEX`) and TorchGeo from PyPI with those pinned.
Where that index cannot be reached (as on ocog's CI machines), the pair comes from PyPI: a
CUDA build (torch 2.14.1+cu130 with its nvidia-* packages, a 6 GB venv, ~5 min to install on
2026-12-02) that runs on the CPU as the CPU build does; the row's install facts say which.
TorchGeo 0.8.1 imports `requests` without declaring it, so it is installed beside.
"""

from __future__ import annotations

NAME = "torchgeo"
VERSION = "0.8.1"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PACKAGES = (f"torchgeo=={VERSION}", "requests")
# installed first, from CPU_INDEX alone (no PyPI, no local wheel folders)
CPU_PACKAGES = ("torch", "torchvision")
PYTHON = ((3, 11), (3, 14))
USES_GDAL = True
SAMPLERS = ("random",)
SAMPLER_AS_RUN = ("its own sampler: RandomGeoSampler(size=patch, units=PIXELS), uniform "
                  "within each raster; files in the order of ocog's windows")  # fmt: skip
PREFETCH = 2
IMPORTS = ("torch.utils.data", "torchgeo.datasets", "torchgeo.samplers")
CHECK = ("import torch, torchvision.ops, torchgeo.datasets; "
         "torchvision.ops.nms(torch.rand(2, 4), torch.rand(2), 0.5)")  # fmt: skip


CONCURRENCY = (
    "torch DataLoader, {workers} worker processes x 2 batches prefetched, "
    "stack_samples; GDAL_NUM_THREADS=ALL_CPUS in each"
)
CACHE = None  # GDAL's block cache: the comparison's budget split over the workers (catalog)


class PerFile:
    """Map-style dataset indexed by (file, query): file i's dataset answers query."""

    def __init__(self, datasets: list):
        self.datasets = datasets

    def __getitem__(self, key):
        i, query = key
        return self.datasets[i][query]


class FileOrder:
    """Queries in ocog's file order, each drawn by that file's RandomGeoSampler."""

    def __init__(self, files, samplers: list):
        self.files, self.samplers = files, samplers

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self):
        draws = [iter(s) for s in self.samplers]
        for f in self.files:
            yield int(f), next(draws[int(f)])


def _datasets(job: dict) -> list:
    from torchgeo.datasets import IntersectionDataset, RasterDataset

    class Mask(RasterDataset):
        is_image = False

    out = []
    for i, image in enumerate(job["images"]):
        ds = RasterDataset(paths=[image], cache=True)
        if job["masks"]:
            ds = IntersectionDataset(ds, Mask(paths=[job["masks"][i]], cache=True))
        out.append(ds)
    return out


def open_loader(job: dict):
    from importlib.metadata import version

    import numpy as np
    import torch
    from peer_kit import LoaderBatches, gdal_facts, windows
    from torch.utils.data import DataLoader
    from torchgeo.datasets import stack_samples
    from torchgeo.samplers import RandomGeoSampler, Units

    files = windows(job)[:, 0]
    counts = np.bincount(files, minlength=len(job["images"]))
    datasets = _datasets(job)
    samplers = [
        RandomGeoSampler(ds, size=job["patch_size"], length=int(max(1, n)), units=Units.PIXELS,
                         generator=torch.Generator().manual_seed(job["seed"] * 1000 + i))
        for i, (ds, n) in enumerate(zip(datasets, counts, strict=True))
    ]  # fmt: skip
    workers = job["workers"]
    loader = DataLoader(PerFile(datasets), sampler=FileOrder(files, samplers),
                        batch_size=job["batch_size"], collate_fn=stack_samples,
                        num_workers=workers, prefetch_factor=PREFETCH if workers else None,
                        persistent_workers=workers > 0)  # fmt: skip
    return LoaderBatches(loader), {**gdal_facts(), "torchgeo": version("torchgeo"),
                              "torch": torch.__version__, "workers": workers}  # fmt: skip
