"""The baselines: unit vectors, seeded, computed as their docstrings say."""

import numpy as np

from ocog_lib.embed.baselines import band_stats, random_projection


def test_random_projection_is_seeded_and_unit_length():
    x = np.random.default_rng(1).standard_normal((5, 4, 8, 8)).astype(np.float32)
    a, b = random_projection(x, 16, seed=3), random_projection(x, 16, seed=3)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (5, 16) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1, atol=1e-6)
    assert not np.array_equal(a, random_projection(x, 16, seed=4))
    proj = np.random.default_rng(3).standard_normal((256, 16), dtype=np.float32) / np.float32(4)
    v = x.reshape(5, -1) @ proj
    np.testing.assert_allclose(a, v / np.linalg.norm(v, axis=1, keepdims=True), rtol=1e-5)


def test_band_stats_are_means_then_stds():
    x = np.zeros((2, 3, 4, 4), dtype=np.float32)
    x[0, 0] = 3.0  # band 0 mean 3, every std 0
    x[1, 2, :2] = 2.0  # band 2 mean 1, std 1
    v = band_stats(x)
    assert v.shape == (2, 6)
    np.testing.assert_allclose(v[0], [1, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(v[1], np.array([0, 0, 1, 0, 0, 1]) / np.sqrt(2), rtol=1e-6)
