"""Segmentation scores: a confusion matrix that ignores label 255, IoU per class, mIoU."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
import torch


class ConfusionMatrix:
    """Counts (true, predicted) pixel pairs; pixels labelled `ignore_index` do not count."""

    def __init__(self, num_classes: int, ignore_index: int = 255):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.counts = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        target = target.reshape(-1).to(torch.int64)
        pred = pred.reshape(-1).to(torch.int64)
        keep = (target != self.ignore_index) & (target >= 0) & (target < self.num_classes)
        idx = target[keep] * self.num_classes + pred[keep]
        binc = torch.bincount(idx.cpu(), minlength=self.num_classes**2)
        self.counts += binc.numpy().reshape(self.num_classes, self.num_classes)

    def iou(self) -> np.ndarray:
        """IoU per class; NaN for a class absent from both labels and predictions."""
        tp = np.diag(self.counts).astype(np.float64)
        union = self.counts.sum(0) + self.counts.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / np.maximum(union, 1), np.nan)

    def miou(self) -> float:
        vals = self.iou()
        vals = vals[~np.isnan(vals)]
        return float(vals.mean()) if vals.size else float("nan")

    def pixel_accuracy(self) -> float:
        total = self.counts.sum()
        return float(np.trace(self.counts) / total) if total else float("nan")


def per_class_iou(cm: ConfusionMatrix, classes: dict[int, str]) -> dict[str, float | None]:
    """{class name: IoU}, None where the class is absent (JSON has no NaN)."""
    vals = cm.iou()
    return {
        classes.get(i, str(i)): (None if math.isnan(v) else round(float(v), 6))
        for i, v in enumerate(vals)
    }


def miou_curve_png(
    steps: Sequence[int], mious: Sequence[float], *, baseline: float | None = None, title: str = ""
) -> bytes:
    """The validation mIoU over training steps as a PNG (Agg backend, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3), dpi=100)
    ax = fig.add_subplot()
    ax.plot(list(steps), list(mious), marker="o", label="model")
    if baseline is not None:
        ax.axhline(baseline, color="grey", linestyle="--", label="majority class")
    ax.set_xlabel("step")
    ax.set_ylabel("validation mIoU")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
