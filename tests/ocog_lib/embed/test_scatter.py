"""The PCA plane equals numpy's principal axes; the plot is a PNG."""

import io

import numpy as np
import pytest

from ocog_lib.embed.scatter import pca_2d, scatter_png
from ocog_lib.errors import InputError
from tests.support.embedsets import grid_set


def test_pca_matches_the_covariance_eigenvectors():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 6)) * np.array([5.0, 3.0, 1.0, 0.5, 0.2, 0.1])
    xy, share = pca_2d(x)
    centred = x - x.mean(0)
    w, v = np.linalg.eigh(np.cov(centred, rowvar=False))
    top = v[:, ::-1][:, :2]
    expect = centred @ top
    for j in range(2):  # an axis' sign is arbitrary
        sign = np.sign(expect[:, j] @ xy[:, j])
        np.testing.assert_allclose(xy[:, j], sign * expect[:, j], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(share, w[::-1][:2] / w.sum(), rtol=1e-9)
    with pytest.raises(InputError, match="two or more"):
        pca_2d(x[:1])


def test_scatter_is_a_png():
    from PIL import Image

    es = grid_set(12, 16)
    png = scatter_png(es, {0: "water", 1: "vegetation", 2: "other", 3: "built"}, title="t")
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.size == (500, 400)
