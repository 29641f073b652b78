"""The loaders users actually pick, measured beside ocog on the same files and windows.

`peer_runs` plans one `PlannedRun` per peer that can run here, each measured in a process
of its own (`runner.DriverRun`: `driver.py` run by the peer's python, one JSON line back),
and a `PeerSkip` with the reason for each that cannot (no Python in its range, a venv
that would not build, a first batch that failed): a skipped peer is never a row.

- tuned rasterio (`peer_rasterio`): torch DataLoader workers with a rasterio handle per
  file each, GDAL tuned; the project's venv.
- async-geotiff (`peer_async_geotiff`), Rust async reads; its own venv.
- rasteret (`peer_rasteret`), reads from a Parquet header index; its own venv, Python 3.12+.
- TorchGeo (`peer_torchgeo`), RasterDataset + RandomGeoSampler: its own windows, random
  sampler only; its own venv with PyTorch's CPU wheels.

The others read exactly ocog's windows: `ocog_windows` (the random, block or grid sampler
as the engine draws it, one window per tile visit), given to every driver as a .npy of
(file, row, col) rows. Venvs live under `<data_dir>/peers/<name>/venv` (`venv`), built
on first use, never in the project's venv and never under `make test` (OCOG_PEER_TESTS=1
lets tests build them).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ocog_lib.bench.measure import length_for, patch_bytes
from ocog_lib.bench.peers.catalog import PEERS, PeerSpec
from ocog_lib.bench.peers.runner import DriverRun, files_key
from ocog_lib.bench.peers.venv import PeerUnavailable, ensure_venv, installed, venv_dir
from ocog_lib.bench.plan import PlannedRun
from ocog_lib.errors import InputError
from ocog_lib.stream.rasters import open_raster
from ocog_lib.stream.samplers import SamplerConfig, sample_windows

PEER_NAMES: tuple[str, ...] = tuple(PEERS)
__all__ = ["PEERS", "PEER_NAMES", "PeerPlan", "PeerSkip", "PeerSpec", "ocog_windows",
           "peer_runs"]  # fmt: skip


@dataclass(frozen=True)
class PeerSkip:
    """A peer that could not run here, and why (listed beside the rows, never as one)."""

    name: str
    reason: str

    def to_dict(self) -> dict:
        return {"name": self.name, "not_run_reason": self.reason}


@dataclass(frozen=True)
class PeerPlan:
    runs: tuple[PlannedRun, ...]
    skipped: tuple[PeerSkip, ...]


def ocog_windows(
    images: Sequence[str], *, sampler: str, patch_size: int, length: int, seed: int
) -> np.ndarray:
    """The (file, row, col) windows ocog's engine reads for these settings without tile
    reuse (a local comparison's plain rows): `samplers.sample_windows` over the files' grids."""
    grids = [open_raster(p).grid for p in images]
    cfg = SamplerConfig(kind=sampler, patch_size=patch_size, length=length, seed=seed)
    return sample_windows(grids, cfg)


@dataclass(frozen=True)
class _Setup:
    """What every peer of one plan shares."""

    images: tuple[str, ...]
    masks: tuple[str, ...]
    windows: np.ndarray
    sampler: str
    variant: str
    patch_size: int
    batch_size: int
    cache_mb: float
    seconds: float
    warmup_seconds: float
    seed: int
    workers: int
    data_dir: Path


def peer_runs(
    images: Sequence[str],
    masks: Sequence[str],
    *,
    sampler: str = "random",
    patch_size: int = 256,
    batch_size: int = 32,
    cache_mb: float = 128.0,
    seconds: float = 5.0,
    warmup_seconds: float = 0.5,
    seed: int = 0,
    threads: int = 0,
    data_dir: Path,
    variant: str = "default",
    peers: Sequence[str | PeerSpec] = PEER_NAMES,
    windows: np.ndarray | None = None,
    check: bool = True,
    say: Callable[[str], None] = lambda _m: None,
) -> PeerPlan:
    """A PlannedRun per peer that runs here (checked with two batches unless `check` is
    False), a PeerSkip per peer that does not. `threads` (0: all cores) is the CPU budget:
    the worker processes of the peers that have workers. `windows`: ocog's windows as
    drawn elsewhere; default `ocog_windows` for a length that outlasts the timed span."""
    if not images:
        raise InputError("images", "no files to measure the peers on")
    if windows is None:
        length = length_for(seconds + warmup_seconds, 8000, batch_size)
        windows = ocog_windows(images, sampler=sampler, patch_size=patch_size, length=length,
                               seed=seed)  # fmt: skip
    setup = _Setup(tuple(images), tuple(masks), np.asarray(windows, dtype=np.int64), sampler,
                   variant, patch_size, batch_size, cache_mb, seconds, warmup_seconds, seed,
                   threads or os.cpu_count() or 1, Path(data_dir))  # fmt: skip
    runs, skipped = [], []
    for peer in peers:
        spec = peer if isinstance(peer, PeerSpec) else _spec(peer)
        got = _plan_one(spec, setup, check, say)
        (runs if isinstance(got, PlannedRun) else skipped).append(got)
    return PeerPlan(tuple(runs), tuple(skipped))


def _spec(name: str) -> PeerSpec:
    """A peer by its name or its slug ("tuned-rasterio", as a command line spells it)."""
    for spec in PEERS.values():
        if name in (spec.name, spec.slug):
            return spec
    raise InputError(f"peer '{name}'", f"unknown; choose from {PEER_NAMES}")


def _plan_one(spec: PeerSpec, s: _Setup, check: bool, say) -> PlannedRun | PeerSkip:
    """The peer's run, or why it cannot run: its sampler, its venv, its first batches."""
    if s.sampler not in spec.samplers:
        return PeerSkip(spec.name, f"its sampler draws {'/'.join(spec.samplers)} windows "
                        f"only; nothing comparable to ocog's '{s.sampler}' sampler")  # fmt: skip
    try:
        python = ensure_venv(spec, s.data_dir, say)
    except PeerUnavailable as exc:
        return PeerSkip(spec.name, str(exc))
    work = s.data_dir / "peers" / spec.slug / "work" / files_key([*s.images, *s.masks])
    call = DriverRun(spec, python, s.images, s.masks, s.windows, s.patch_size, s.batch_size,
                     s.seconds, s.warmup_seconds, s.workers, s.cache_mb, s.seed, work)  # fmt: skip
    facts: dict = {}
    if check:
        say(f"{spec.name}: first batches")
        try:
            facts = call.check()
        except InputError as exc:
            return PeerSkip(spec.name, f"its first batches failed: {exc.cause}")
    r = open_raster(s.images[0])
    return PlannedRun(f"peer {spec.name}", "peer", s.variant, s.sampler, call,
                      patch_bytes(r.bands, s.patch_size, r.dtype.itemsize),
                      _config(spec, s, facts), f"peer {spec.name} on {s.variant}")  # fmt: skip


def _config(spec: PeerSpec, s: _Setup, facts: dict) -> dict:
    """What a peer's row says about how it ran."""
    stamp = installed(spec, s.data_dir)
    return {
        "peer": spec.name,
        "peer_version": spec.version or facts.get("rasterio"),
        "venv": str(venv_dir(spec, s.data_dir)) if spec.python else "project venv",
        "sampler_as_run": spec.sampler_as_run,
        "cache_budget": spec.cache_text(s.cache_mb, s.workers),
        "cache_mb": s.cache_mb,
        "concurrency": spec.concurrency.format(workers=s.workers),
        "workers": s.workers,
        "masks": bool(s.masks),
        "windows": len(s.windows),
        "packages": _key_packages(spec, stamp.get("freeze", [])),
        "facts": facts,
    }


def _key_packages(spec: PeerSpec, freeze: list[str]) -> list[str]:
    """The pinned versions that matter from a venv's `pip freeze` (not its ~200 lines)."""
    names = {p.split("==")[0].lower() for p in (*spec.packages, *spec.cpu_packages, "numpy")}
    return [ln for ln in freeze if ln.split("==")[0].lower().replace("_", "-") in names]
