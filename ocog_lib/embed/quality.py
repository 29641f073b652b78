"""Retrieval quality: does a query patch's nearest neighbours share its label?

Held-out patches only (the grid windows below each raster's split: never trained on),
those with a label. Each is a query; the database is every other held-out patch; a hit
is relevant when its label (the patch's majority class) equals the query's. Search is
exact cosine similarity in numpy (vectors are unit length: a dot product), ties broken
by database order.

With rel_i = 1 when the i-th nearest is relevant, R = relevant patches in the database:

    precision@k = (1/k) sum_{i<=k} rel_i
    AP@k        = (1/min(k, R)) sum_{i<=k} rel_i * precision@i
    mAP@k       = mean of AP@k over the queries

A query with R = 0 (the only patch of its class) has nothing to find and is left out of
both means; `n_queries` counts the rest. k larger than the database is capped to it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ocog_lib.embed.baselines import band_stats, random_projection
from ocog_lib.embed.infer import encode, patch_labels
from ocog_lib.embed.train import dataset_files, load_encoder, normalised, read_patches
from ocog_lib.embed.vectors import NO_LABEL
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings
from ocog_lib.stream.device import pick_device
from ocog_lib.stream.rasters import open_raster
from ocog_lib.stream.split import SpatialSplit

ENCODER = "encoder"


@dataclass(frozen=True)
class QualityResult:
    method: str  # "encoder", "random_projection" or "band_stats"
    dim: int
    k: int
    precision_at_k: float
    map_at_k: float
    n_queries: int
    model_id: str = ""
    dataset: str = ""


def retrieval_scores(vectors: np.ndarray, labels: np.ndarray, k: int, *, block: int = 1024
                     ) -> tuple[float, float, int, int]:  # fmt: skip
    """(precision@k, mAP@k, queries, k) of exact cosine search as the module defines them
    (k capped to the database); rows labelled NO_LABEL take no part."""
    if k < 1:
        raise InputError(f"k {k}", "must be at least 1")
    labels = np.asarray(labels)
    keep = labels != NO_LABEL
    v, labels = np.asarray(vectors, dtype=np.float32)[keep], labels[keep]
    if len(v) < 2:
        raise InputError("retrieval quality", f"{len(v)} labelled patch(es): need two or more")
    k = min(k, len(v) - 1)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    relevant = counts[inverse] - 1
    ranks = np.arange(1, k + 1)
    prec, ap = [], []
    for s in range(0, len(v), block):
        sims = v[s : s + block] @ v.T
        sims[np.arange(len(sims)), np.arange(s, s + len(sims))] = -np.inf  # not itself
        top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        rel = labels[top] == labels[s : s + block, None]
        prec.append(rel.sum(1) / k)
        ap.append((np.cumsum(rel, 1) / ranks * rel).sum(1) /
                  np.maximum(np.minimum(k, relevant[s : s + block]), 1))  # fmt: skip
    q = relevant > 0
    if not q.any():
        raise InputError("retrieval quality", "no two held-out patches share a label")
    p_at_k, map_at_k = np.concatenate(prec)[q].mean(), np.concatenate(ap)[q].mean()
    return float(p_at_k), float(map_at_k), int(q.sum()), k


@dataclass(frozen=True)
class HeldOut:
    """The held-out patches of a model's dataset, read once: normalised as the encoder
    sees them, with their labels and windows."""

    patches: torch.Tensor  # float32 (n, C, p, p), normalised
    labels: np.ndarray  # int16 (n,)
    windows: np.ndarray  # (n, 3) file, row, col


def held_out(meta: dict, settings: Settings) -> HeldOut:
    """The grid windows below each raster's split, for the files the model was trained on."""
    cfg = meta["config"]
    files = dataset_files(meta["dataset"], meta["variant"], settings, meta["role"])
    if files.fingerprint != meta["fingerprint"]:
        raise InputError(f"{meta['dataset']}/{meta['variant']}",
                         f"its files changed since encoder {meta['model_id']} was trained "
                         "on them: retrain it before measuring it")  # fmt: skip
    if not files.masks:
        raise InputError(f"{meta['dataset']}/{meta['variant']}",
                         "has no masks: no labels to measure retrieval against")
    patch = int(meta["patch_size"])
    grids = [open_raster(p).grid for p in files.images]
    windows = SpatialSplit(cfg["val_fraction"], patch).val_windows(grids, cfg["max_val_patches"])
    x, y = read_patches(files.images, files.masks, windows, patch)
    return HeldOut(normalised(x, meta["norm"]), patch_labels(y, len(x)), windows)


def measure_quality(model_path: str | Path, settings: Settings | None = None, *, k: int = 10,
                    device: str = "auto") -> list[QualityResult]:
    """precision@k and mAP@k of the encoder and of both baselines on the held-out patches."""
    if k < 1:
        raise InputError(f"k {k}", "must be at least 1")
    settings = settings or Settings.from_env()
    dev = pick_device(device)
    model, meta = load_encoder(model_path, dev)
    data = held_out(meta, settings)
    unit = {"mean": torch.zeros(data.patches.shape[1]), "std": torch.ones(data.patches.shape[1])}
    x = data.patches.numpy()
    methods = {
        ENCODER: encode(model, data.patches, unit, dev),
        "random_projection": random_projection(x, model.spec.dim, int(meta["config"]["seed"])),
        "band_stats": band_stats(x),
    }
    out = []
    for method, vectors in methods.items():
        p, m, n, used = retrieval_scores(vectors, data.labels, k)
        out.append(QualityResult(method, int(vectors.shape[1]), used, p, m, n,
                                 meta["model_id"], meta["dataset"]))  # fmt: skip
    return out


def quality_rows(results: list[QualityResult]) -> list[dict]:
    """Rows for a `retrieval_quality` table, one per method: model_id, dataset, method,
    baseline (False for the encoder), dim, k, precision_at_k, map_at_k, n_queries."""
    cols = ("model_id", "dataset", "method", "baseline", "dim", "k", "precision_at_k",
            "map_at_k", "n_queries")  # fmt: skip
    rows = []
    for r in results:
        d = dict(asdict(r), baseline=r.method != ENCODER)
        rows.append({c: d[c] for c in cols})
    return rows
