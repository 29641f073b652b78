import math

import numpy as np
import pytest
import torch

from ocog_lib.train.metrics import ConfusionMatrix, miou_curve_png, per_class_iou


def test_iou_counts_pixels_and_skips_ignored():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 255]], dtype=torch.uint8)
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 3, 0]])
    cm = ConfusionMatrix(4, ignore_index=255)
    cm.update(pred, target)
    assert cm.counts.sum() == 6  # the two ignored pixels do not count
    iou = cm.iou()
    # class 0: tp 1, fp 1 (pred 0 where 2), fn 1 -> 1/3; class 1: tp 2, fp 1 -> 2/3
    # class 2: tp 1, fn 1 -> 1/2; class 3: absent from labels and (counted) predictions
    np.testing.assert_allclose(iou[:3], [1 / 3, 2 / 3, 1 / 2])
    assert math.isnan(iou[3])
    assert cm.miou() == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert cm.pixel_accuracy() == pytest.approx(4 / 6)
    named = per_class_iou(cm, {0: "water", 1: "veg", 2: "soil", 3: "built"})
    assert named["built"] is None and named["veg"] == pytest.approx(2 / 3, abs=1e-6)


def test_updates_accumulate():
    a, b = ConfusionMatrix(3), ConfusionMatrix(3)
    t = torch.randint(0, 3, (2, 8, 8))
    p = torch.randint(0, 3, (2, 8, 8))
    a.update(p, t)
    b.update(p[:1], t[:1])
    b.update(p[1:], t[1:])
    np.testing.assert_array_equal(a.counts, b.counts)


def test_curve_is_a_png():
    png = miou_curve_png([0, 10, 20], [0.1, 0.4, 0.5], baseline=0.2, title="t")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
