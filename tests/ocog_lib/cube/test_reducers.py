"""Temporal reducers equal numpy's nan-reducers on the same stacks; no value stays NaN."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ocog_lib.cube.reducers import REDUCERS, reduce
from ocog_lib.errors import InputError

NUMPY = {
    "mean": np.nanmean, "median": np.nanmedian, "min": np.nanmin, "max": np.nanmax,
    "std": np.nanstd, "var": np.nanvar, "sum": np.nansum,
}  # fmt: skip

values = st.one_of(st.just(np.nan), st.floats(-1e4, 1e4, width=32), st.sampled_from([0.0, 7.0]))
stacks = hnp.arrays(np.float32, st.tuples(st.integers(1, 7), st.integers(1, 5),
                                          st.integers(1, 6)), elements=values)  # fmt: skip


def _numpy(fn, stack, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = np.asarray(fn(stack, *args, axis=0), dtype=np.float32)
    out[np.isnan(stack).all(axis=0)] = np.nan  # nansum's 0 for no value is NaN here
    return out


@settings(max_examples=150, deadline=None)
@given(stacks)
def test_equal_numpy_nan_reducers(stack):
    for name, fn in NUMPY.items():
        np.testing.assert_array_equal(reduce(stack, name), _numpy(fn, stack), err_msg=name)
    for p in (0, 10, 50, 90, 100, 33.3):
        np.testing.assert_array_equal(reduce(stack, "percentile", p),
                                      _numpy(np.nanpercentile, stack, p))  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(stacks)
def test_count_first_last_mode(stack):
    valid = ~np.isnan(stack)
    none = ~valid.any(axis=0)
    count = valid.sum(axis=0).astype(np.float32)
    count[none] = np.nan
    np.testing.assert_array_equal(reduce(stack, "count"), count)
    first, last, mode = (reduce(stack, r) for r in ("first", "last", "mode"))
    for i, j in np.ndindex(stack.shape[1:]):
        seq = [v for v in stack[:, i, j] if not np.isnan(v)]
        if not seq:
            assert np.isnan(first[i, j]) and np.isnan(last[i, j]) and np.isnan(mode[i, j])
            continue
        assert first[i, j] == seq[0] and last[i, j] == seq[-1]
        vals, counts = np.unique(seq, return_counts=True)
        assert mode[i, j] == vals[np.argmax(counts)]  # the smallest on a tie


def test_no_value_is_nan_never_zero():
    stack = np.full((3, 2, 2), np.nan, np.float32)
    stack[:, 0, 0] = [1, 2, 4]
    for name in REDUCERS:
        out = reduce(stack, name, 50 if name == "percentile" else None)
        assert out.dtype == np.float32 and out.shape == (2, 2)
        assert np.isnan(out[1:, :]).all() and np.isnan(out[0, 1]), name
        assert not np.isnan(out[0, 0]), name
    assert np.isnan(reduce(np.zeros((0, 2, 2), np.float32), "sum")).all()


@pytest.mark.parametrize(
    "reducer, p, what",
    [("avg", None, "reducer=avg"), ("percentile", None, "p=None"),
     ("percentile", 101, "p=101"), ("mean", 50, "p=50")],
)  # fmt: skip
def test_bad_reducer_or_p(reducer, p, what):
    with pytest.raises(InputError) as err:
        reduce(np.zeros((2, 2, 2), np.float32), reducer, p)
    assert err.value.what == what
