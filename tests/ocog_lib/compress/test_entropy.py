"""The factorised entropy model: valid CDFs, likelihoods that are masses, coding tables
that are integer, positive and cover where the mass is."""

import numpy as np
import pytest
import torch

from ocog_lib.compress.entropy import (
    COUNT_BITS,
    TABLE_RANGE,
    FactorizedDensity,
    build_tables,
    integer_pmf,
)
from ocog_lib.errors import InputError


@pytest.fixture
def density():
    torch.manual_seed(3)
    d = FactorizedDensity(6)
    with torch.no_grad():  # channels of different spread and offset, as after training
        for i, m in enumerate(d.matrices):
            m.add_(torch.linspace(-1.0, 1.5, 6)[:, None, None] * (i == 0))
        d.biases[-1].add_(torch.linspace(-2, 2, 6)[:, None, None])
    return d


def test_cdfs_are_monotone_and_in_unit_interval(density):
    x = torch.linspace(-300, 300, 4001).expand(6, 1, -1)
    with torch.no_grad():
        c = density.cdf(x)
    assert (c >= 0).all() and (c <= 1).all()
    assert (c.diff(dim=2) >= 0).all()
    assert (c[..., 0] < 1e-3).all() and (c[..., -1] > 1 - 1e-3).all()


def test_likelihood_is_the_mass_of_the_unit_bin(density):
    y = torch.randn(2, 6, 3, 3) * 5
    with torch.no_grad():
        p = density.likelihood(y)
        v = y.transpose(0, 1).reshape(6, 1, -1)
        mass = density.cdf(v + 0.5) - density.cdf(v - 0.5)
    torch.testing.assert_close(p, mass.reshape(6, 2, 3, 3).transpose(0, 1).clamp(min=1e-9))
    pmf = integer_pmf(density)
    assert pmf.shape == (6, 2 * TABLE_RANGE + 1)
    np.testing.assert_allclose(pmf.sum(1), 1.0, atol=1e-6)
    with pytest.raises(InputError, match="latents"):
        density.likelihood(torch.zeros(1, 5, 2, 2))


def test_likelihood_gradient_reaches_the_density(density):
    y = torch.randn(4, 6, 2, 2, requires_grad=True)
    density.bits(y).backward()
    assert y.grad is not None and all(m.grad is not None for m in density.matrices)


def test_tables_are_valid_and_fixed(density):
    t = build_tables(density, "0123456789abcdef")
    assert t.counts.dtype == np.int64 and t.lo.shape == t.lengths.shape == (6,)
    pmf = integer_pmf(density)
    for c in range(6):
        row = t.probabilities(c)
        assert len(row) == t.lengths[c] + 1 and (row >= 1).all()
        assert row.sum() <= 2**COUNT_BITS
        lo, hi = t.lo[c] + TABLE_RANGE, t.lo[c] + TABLE_RANGE + t.lengths[c]
        assert pmf[c, lo:hi].sum() > 1 - 1e-5  # the table covers where the mass is
        # the table's distribution is the density's, quantised
        np.testing.assert_allclose(row[:-1] / row.sum(), pmf[c, lo:hi], atol=2e-4)
    # computed twice: the same integers (encoder and decoder agree)
    again = build_tables(density, t.key)
    assert np.array_equal(again.counts, t.counts) and np.array_equal(again.lo, t.lo)
    assert not any(p.device.type != "cpu" or p.dtype != torch.float32
                   for p in density.parameters())  # fmt: skip
