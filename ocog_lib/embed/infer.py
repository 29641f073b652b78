"""Embedding a whole dataset: every patch of the engine's grid sampler, keyed by H3 cell,
time and source (`EmbeddingSet`).

The engine streams the grid's windows (images and, when the dataset has them, masks) in
batches, so an archive never has to fit in memory. Each patch's centre comes from its
raster's transform, reprojected to lon/lat (rasterio.warp.transform); its time from the
raster's tags (OCOG_DATETIME, else TIFFTAG_DATETIME; NaT when neither: the manifest has
no time field); its label is the majority class of its mask, ignored pixels left out
(NO_LABEL when all are ignored or there is no mask). One H3 resolution serves the whole
set, so its cells compare: the configured one, else `resolution_for` the finest pixel
size among the rasters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ocog_lib.embed.h3cells import cells_for, resolution_for
from ocog_lib.embed.model import Encoder
from ocog_lib.embed.train import dataset_files, load_encoder, normalised
from ocog_lib.embed.vectors import NO_LABEL, EmbeddingSet
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings
from ocog_lib.stream.config import StreamConfig
from ocog_lib.stream.dataset import CogStream
from ocog_lib.stream.device import autocast, pick_device
from ocog_lib.stream.samplers import SamplerConfig, sample_windows

IGNORE = 255
_M_PER_DEG = 111_320.0  # metres per degree of longitude at the equator (and about latitude)


def encode(model: Encoder, images: torch.Tensor, norm: dict, device: torch.device, *,
           batch_size: int = 256, amp: bool = False) -> np.ndarray:
    """float32 (n, dim) unit vectors of raw (un-normalised) patches."""
    out = []
    model.eval()
    with torch.no_grad(), autocast(device, amp):
        for i in range(0, len(images), batch_size):
            x = normalised(images[i : i + batch_size].to(device, non_blocking=True), norm)
            out.append(model(x).float().cpu())
    if not out:
        return np.empty((0, model.spec.dim), dtype=np.float32)
    return torch.cat(out).numpy().astype(np.float32, copy=False)


def patch_labels(masks: torch.Tensor | np.ndarray | None, n: int, ignore: int = IGNORE
                 ) -> np.ndarray:  # fmt: skip
    """int16 majority class of each (p, p) mask, the smallest class on a tie; NO_LABEL
    where every pixel is `ignore` or there are no masks."""
    if masks is None:
        return np.full(n, NO_LABEL, dtype=np.int16)
    m = np.asarray(masks).reshape(len(masks), -1).astype(np.int64).clip(0, 255)
    key = (np.arange(len(m))[:, None] * 256 + m).ravel()
    counts = np.bincount(key, minlength=len(m) * 256).reshape(len(m), 256)
    counts[:, ignore] = 0
    labels = counts.argmax(1).astype(np.int16)
    labels[counts.sum(1) == 0] = NO_LABEL
    return labels


@dataclass(frozen=True)
class Place:
    """Where a raster lies and when it was taken."""

    crs: object  # rasterio CRS
    transform: object  # rasterio Affine
    time: np.datetime64  # [us]; NaT when unknown
    pixel_size_m: float


def raster_place(path: str) -> Place:
    import rasterio

    with rasterio.open(path) as ds:
        crs, transform, tags = ds.crs, ds.transform, ds.tags()
        cx, cy = transform * (ds.width / 2, ds.height / 2)
    if crs is None:
        raise InputError(path, "has no CRS: its patches cannot be placed on the globe")
    sx, sy = math.hypot(transform.a, transform.d), math.hypot(transform.b, transform.e)
    if crs.is_geographic:
        size = math.sqrt(sx * math.cos(math.radians(cy)) * sy) * _M_PER_DEG
    else:
        size = math.sqrt(sx * sy) * crs.linear_units_factor[1]
    return Place(crs, transform, scene_time(tags), float(size))


def scene_time(tags: dict) -> np.datetime64:
    """The acquisition time in a raster's tags, as UTC datetime64[us]; NaT when absent."""
    text = tags.get("OCOG_DATETIME") or ""
    if not text and tags.get("TIFFTAG_DATETIME"):
        day, _, clock = tags["TIFFTAG_DATETIME"].partition(" ")
        text = f"{day.replace(':', '-')}T{clock}"
    text = text.strip().removesuffix("Z").split("+")[0]
    try:
        return np.datetime64(text, "us") if text else np.datetime64("NaT", "us")
    except ValueError:
        return np.datetime64("NaT", "us")


def patch_centres(place: Place, rows: np.ndarray, cols: np.ndarray, patch: int
                  ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """lon, lat (float64) of the centres of the windows with these top-left corners."""
    from rasterio.warp import transform as warp

    t = place.transform
    x = t.c + t.a * (cols + patch / 2) + t.b * (rows + patch / 2)
    y = t.f + t.d * (cols + patch / 2) + t.e * (rows + patch / 2)
    if len(x) == 0:
        return np.empty(0), np.empty(0)
    lon, lat = warp(place.crs, "EPSG:4326", x.tolist(), y.tolist())
    return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)


def embed_dataset(model_path: str | Path, dataset: str | None = None,
                  settings: Settings | None = None, *, variant: str | None = None,
                  role: str | None = None, h3_resolution: int | None = None,
                  batch_size: int = 256, device: str = "auto") -> EmbeddingSet:
    """Every grid patch of the dataset's variant files embedded by the saved encoder
    (dataset, variant and role default to the ones it was trained on)."""
    settings = settings or Settings.from_env()
    dev = pick_device(device)
    model, meta = load_encoder(model_path, dev)
    cfg = meta["config"]
    files = dataset_files(dataset or meta["dataset"], variant or meta["variant"], settings,
                          role or meta["role"])  # fmt: skip
    patch = int(meta["patch_size"])
    places = [raster_place(p) for p in files.images]
    res = h3_resolution if h3_resolution is not None else cfg.get("h3_resolution")
    if res is None:
        res = resolution_for(min(p.pixel_size_m for p in places), patch)
    scfg = StreamConfig(sampler="grid", patch_size=patch, batch_size=batch_size,
                        dtype="float32", pin_memory=dev.type == "cuda")  # fmt: skip
    stream = CogStream(files.images, files.masks or None, scfg,
                       windows=np.empty((0, 3), dtype=np.int64))  # fmt: skip
    try:
        windows = sample_windows(stream.grids, SamplerConfig("grid", patch))
        vecs, labels, wins = [], [], []
        for b in stream.loader(windows):
            vecs.append(encode(model, b["image"], meta["norm"], dev, batch_size=batch_size,
                               amp=bool(cfg.get("amp", False))))  # fmt: skip
            labels.append(patch_labels(b.get("mask"), len(b["image"])))
            wins.append(b["window"].numpy())
    finally:
        stream.close()
    return _assemble(np.concatenate(vecs), np.concatenate(labels), np.concatenate(wins),
                     places, files.relpaths, patch, int(res))


def place_windows(windows: np.ndarray, places: list[Place], patch: int, res: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """cells, lon, lat, time of (file, row, col) windows, each raster's centres reprojected
    in one call (the embeddings and the compressed archive place patches alike)."""
    n = len(windows)
    lon, lat = np.empty(n), np.empty(n)
    times = np.empty(n, dtype="datetime64[us]")
    for f, place in enumerate(places):
        sel = windows[:, 0] == f
        lon[sel], lat[sel] = patch_centres(place, windows[sel, 1], windows[sel, 2], patch)
        times[sel] = place.time
    return cells_for(lon, lat, res), lon, lat, times


def _assemble(vectors: np.ndarray, labels: np.ndarray, windows: np.ndarray, places: list[Place],
              sources: list[str], patch: int, res: int) -> EmbeddingSet:
    """The set's columns."""
    cells, lon, lat, times = place_windows(windows, places, patch, res)
    return EmbeddingSet(
        vectors=vectors.astype(np.float32, copy=False), cells=cells,
        lon=lon, lat=lat, time=times,
        source=np.array([sources[f] for f in windows[:, 0]], dtype=object),
        row=windows[:, 1].astype(np.int32), col=windows[:, 2].astype(np.int32),
        labels=labels.astype(np.int16),
    )
