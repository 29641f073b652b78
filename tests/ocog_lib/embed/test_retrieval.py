"""precision@k and mAP@k exactly as quality.py defines them, on hand-checked cases."""

import numpy as np
import pytest

from ocog_lib.embed.quality import QualityResult, quality_rows, retrieval_scores
from ocog_lib.embed.vectors import NO_LABEL, normalise
from ocog_lib.errors import InputError


def _unit(angles_deg):
    a = np.radians(np.asarray(angles_deg, dtype=np.float64))
    return normalise(np.stack([np.cos(a), np.sin(a)], axis=1))


def test_hand_computed_scores():
    # on a circle: class 0 at 0, 10, 20 degrees; class 1 at 15 and 100
    v = _unit([0, 10, 20, 15, 100])
    labels = np.array([0, 0, 0, 1, 1])
    p, m, n, k = retrieval_scores(v, labels, k=2)
    # top-2 per query (ties go to the lower index):
    # q0: 10(A) 15(B) -> rel 1 0: P@2 .5, AP = 1/min(2,2)*(1) = .5
    # q1: 15(B) 0(A)  -> rel 0 1: P@2 .5, AP = (1/2)/2 = .25
    # q2: 15(B) 10(A) -> rel 0 1: .5, .25
    # q3: 10(A) 20(A) -> rel 0 0: 0, 0
    # q4: 20(A) 15(B) -> rel 0 1: .5, (1/2)/min(2,1) = .5
    assert (n, k) == (5, 2)
    assert p == pytest.approx((0.5 + 0.5 + 0.5 + 0 + 0.5) / 5)
    assert m == pytest.approx((0.5 + 0.25 + 0.25 + 0 + 0.5) / 5)


def test_perfect_and_unlabelled_and_lonely():
    v = _unit([0, 1, 2, 90, 91, 180, 45])
    labels = np.array([0, 0, 0, 1, 1, 2, NO_LABEL])  # class 2 alone: no query
    p, m, n, k = retrieval_scores(v, labels, k=10)
    assert (n, k) == (5, 5)  # k capped to the 6 labelled patches minus the query
    assert m == pytest.approx(1.0)  # every relevant patch ranked first
    assert p == pytest.approx((2 / 5 * 3 + 1 / 5 * 2) / 5)
    with pytest.raises(InputError, match="k 0"):
        retrieval_scores(v, labels, k=0)
    with pytest.raises(InputError, match="share a label"):
        retrieval_scores(v[:2], np.array([0, 1]), k=1)
    with pytest.raises(InputError, match="need two"):
        retrieval_scores(v[:1], np.array([0]), k=1)


def test_rows_name_their_columns():
    r = [QualityResult("encoder", 16, 10, 0.9, 0.8, 100, "abc", "sample"),
         QualityResult("band_stats", 8, 10, 0.7, 0.6, 100, "abc", "sample")]
    rows = quality_rows(r)
    assert list(rows[0]) == ["model_id", "dataset", "method", "baseline", "dim", "k",
                             "precision_at_k", "map_at_k", "n_queries"]
    assert [row["baseline"] for row in rows] == [False, True]
    assert rows[1]["map_at_k"] == 0.6
