"""The peers as the project side sees them: one `PeerSpec` per peer module's constants.

Each `peer_<name>.py` keeps its facts (version, packages, Python, sampler, concurrency,
cache) as module constants beside its loader code, importable without the peer's
packages; this module turns them into frozen specs and owns what is common to every
GDAL-based peer: the cache budget split over its worker processes, given in bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import ModuleType

from ocog_lib.bench.peers import (
    peer_async_geotiff,
    peer_rasteret,
    peer_rasterio,
    peer_torchgeo,
)

MIB = 2**20


@dataclass(frozen=True)
class PeerSpec:
    """What it takes to run one peer and how its row describes it."""

    name: str
    module: str  # the driver imports it by this name, beside driver.py
    version: str | None  # None: the project's own package (tuned rasterio)
    packages: tuple[str, ...] = ()  # pip requirements of its own venv; () with python None
    python: tuple[tuple[int, int], tuple[int, int]] | None = None  # [lo, hi); None: project
    uses_gdal: bool = False
    samplers: tuple[str, ...] = ("random", "block", "grid")
    sampler_as_run: str = "ocog's windows"
    concurrency: str = ""  # "{workers}" filled in
    cache: str | None = None  # None: GDAL's block cache (the budget applied, see gdal_env)
    cpu_index: str | None = None  # installed from first, alone: PyTorch's CPU wheels
    cpu_packages: tuple[str, ...] = ()
    check: str | None = None  # python code the new venv must run before it is kept

    @property
    def slug(self) -> str:
        return self.name.replace(" ", "-")

    def install(self) -> dict:
        """What its venv is made of, as its stamp stores it (JSON: tuples become lists): a
        venv built from anything else is rebuilt."""
        made = {"packages": self.packages, "cpu_index": self.cpu_index,
                "cpu_packages": self.cpu_packages, "python": self.python}  # fmt: skip
        return json.loads(json.dumps(made))

    def env(self, cache_mb: float, workers: int) -> dict[str, str]:
        return gdal_env(cache_mb, workers) if self.uses_gdal else {}

    def cache_text(self, cache_mb: float, workers: int) -> str:
        if self.cache is not None:
            return self.cache
        per, n = gdal_cache_bytes(cache_mb, workers), max(1, workers)
        return f"GDAL block cache {per} bytes per worker x {n} = {cache_mb:g} MiB"


def gdal_cache_bytes(cache_mb: float, workers: int) -> int:
    """Each worker's share of the budget (at least 1 MiB), in bytes."""
    return max(MIB, int(cache_mb * MIB) // max(1, workers))


def gdal_env(cache_mb: float, workers: int) -> dict[str, str]:
    """GDAL's settings for a rasterio-based peer, through its driver's environment: bytes,
    because GDAL takes a GDAL_CACHEMAX under 100000 as MB (rasterio.Env's as bytes)."""
    return {"GDAL_NUM_THREADS": "ALL_CPUS",
            "GDAL_CACHEMAX": str(gdal_cache_bytes(cache_mb, workers))}  # fmt: skip


def spec_of(module: ModuleType) -> PeerSpec:
    """A peer module's constants as a spec."""
    return PeerSpec(
        name=module.NAME,
        module=module.__name__.rpartition(".")[2],
        version=module.VERSION,
        packages=tuple(module.PACKAGES),
        python=module.PYTHON,
        uses_gdal=module.USES_GDAL,
        samplers=tuple(module.SAMPLERS),
        sampler_as_run=module.SAMPLER_AS_RUN,
        concurrency=module.CONCURRENCY,
        cache=module.CACHE,
        cpu_index=getattr(module, "CPU_INDEX", None),
        cpu_packages=tuple(getattr(module, "CPU_PACKAGES", ())),
        check=getattr(module, "CHECK", None),
    )


PEERS: dict[str, PeerSpec] = {
    s.name: s
    for s in map(spec_of, (peer_rasterio, peer_async_geotiff, peer_rasteret, peer_torchgeo))
}
