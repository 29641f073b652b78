"""A look at an embedding set: its first two principal components, coloured by label.

Patches of one class that cluster in the plane are what retrieval quality measures in
numbers; the plot shows it at a glance (the embeddings asset puts it in its metadata).
matplotlib's object API with the Agg canvas: no display, no pyplot state.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np

from ocog_lib.embed.vectors import NO_LABEL, EmbeddingSet
from ocog_lib.errors import InputError

MAX_POINTS = 5000  # drawn at most (an even thinning of larger sets)
_COLOURS = {0: "#1f77b4", 1: "#2ca02c", 2: "#c49c5a", 3: "#d62728"}  # the sample's classes


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, 2) coordinates on the two leading principal axes, and the share of variance
    each explains."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2 or x.shape[1] < 2:
        raise InputError("PCA", f"needs two or more vectors of two or more values, got {x.shape}")
    x = x - x.mean(0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    var = s**2
    share = var[:2] / var.sum() if var.sum() > 0 else np.zeros(2)
    return x @ vt[:2].T, share


def scatter_png(es: EmbeddingSet, classes: Mapping[int, str] | None = None, *,
                title: str = "") -> bytes:  # fmt: skip
    """The set's PCA plane as a PNG, one colour per label (grey: no label)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    keep = np.linspace(0, len(es) - 1, min(len(es), MAX_POINTS)).astype(np.int64)
    xy, share = pca_2d(es.vectors[keep])
    labels = np.asarray(es.labels)[keep]
    fig = Figure(figsize=(5, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    palette = iter(["#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#ff7f0e"])
    for label in np.unique(labels):
        sel = labels == label
        name = "no label" if label == NO_LABEL else (classes or {}).get(int(label), str(label))
        colour = "#bbbbbb" if label == NO_LABEL else _COLOURS.get(int(label)) or next(
            palette, "#7f7f7f")
        ax.scatter(xy[sel, 0], xy[sel, 1], s=6, alpha=0.6, color=colour, linewidths=0,
                   label=f"{name} ({int(sel.sum())})")  # fmt: skip
    ax.set_xlabel(f"PC1 ({share[0]:.0%} of variance)")
    ax.set_ylabel(f"PC2 ({share[1]:.0%})")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=7, markerscale=2)
    ax.set_title(title or f"{len(es)} embeddings ({es.dim}-d), {len(keep)} shown", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
