"""Temporal reducers over a (t, h, w) float32 stack in which NaN means "no value".

Each equals numpy's nan-aware reducer over the time axis on the same stack: mean nanmean,
min/max nanmin/nanmax, std/var nanstd/nanvar (ddof 0), sum nansum, median nanmedian and
percentile nanpercentile (its default linear method). Median picks the middle values of
the sorted stack and percentile runs numpy's percentile on each group of pixels with
equally many values: nanmedian's and nanpercentile's numbers without their
pixel-by-pixel loops. `count` is the number of values,
`mode` the most frequent value (the smallest one on a tie), `first`/`last` the
earliest/latest value in time order (the stack's order).

A pixel with no value at any time is NaN in every result, `sum` and `count` included
(numpy's nansum says 0 there): nodata stays nodata, never 0. All-NaN pixels are set
aside before numpy sees them, so no RuntimeWarning is raised (and no thread-unsafe
warning filter is needed).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ocog_lib.errors import InputError

REDUCERS = ("mean", "median", "min", "max", "std", "sum", "var", "mode", "count",
            "percentile", "first", "last")  # fmt: skip


def reduce(stack: np.ndarray, reducer: str, p: float | None = None) -> np.ndarray:
    """Reduce a (t, h, w) stack over time to (h, w) float32 (NaN where no value)."""
    if reducer not in REDUCERS:
        raise InputError(f"reducer={reducer}", f"unknown reducer; one of {', '.join(REDUCERS)}")
    if reducer == "percentile":
        if p is None or not isinstance(p, int | float) or not 0 <= p <= 100:
            raise InputError(f"p={p!r}", "reducer=percentile needs p in 0..100")
    elif p is not None:
        raise InputError(f"p={p!r}", f"only reducer=percentile takes p, not {reducer}")
    stack = np.asarray(stack, dtype=np.float32)
    if stack.ndim != 3:
        raise InputError(f"stack of shape {stack.shape}", "expected (time, height, width)")
    empty = np.isnan(stack).all(axis=0) if stack.shape[0] else np.ones(stack.shape[1:], bool)
    if empty.all():
        return np.full(stack.shape[1:], np.nan, dtype=np.float32)
    if empty.any():  # give numpy a value there (dropped below): no all-NaN slice warnings
        stack = stack.copy()
        stack[0][empty] = 0.0
    out = np.asarray(_REDUCE[reducer](stack, p), dtype=np.float32)
    out[empty] = np.nan
    return out


def _mode(stack: np.ndarray) -> np.ndarray:
    """Most frequent value per pixel; ties go to the smallest (runs of a sorted stack)."""
    ordered = np.sort(stack, axis=0)  # NaN last
    best = np.full(stack.shape[1:], np.nan, dtype=np.float32)
    best_run = np.zeros(stack.shape[1:], dtype=np.int64)
    run = np.zeros(stack.shape[1:], dtype=np.int64)
    for i in range(ordered.shape[0]):
        v = ordered[i]
        same = ordered[i - 1] == v if i else np.zeros(v.shape, bool)
        run = np.where(same, run + 1, 1)
        better = ~np.isnan(v) & (run > best_run)
        best = np.where(better, v, best)
        best_run = np.where(better, run, best_run)
    return best


def _median(stack: np.ndarray) -> np.ndarray:
    """nanmedian's numbers: the middle value, or the float32 mean of the two middle ones
    (numpy's median takes np.mean of them: their float32 sum, halved)."""
    ordered = np.sort(stack, axis=0)  # NaN last
    n = np.count_nonzero(~np.isnan(stack), axis=0)
    lo = np.take_along_axis(ordered, ((n - 1) // 2)[None], axis=0)[0]
    hi = np.take_along_axis(ordered, (n // 2)[None], axis=0)[0]
    return (lo + hi) / np.float32(2)


def _by_count(stack: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """`fn` over axis 0 of the values only, pixels grouped by how many they have: numpy's
    nanmedian/nanpercentile reduce each pixel's values alone (slowly, one by one); the same
    function over an (n, pixels) block of n values each gives the same numbers."""
    t = stack.shape[0]
    ordered = np.sort(stack, axis=0).reshape(t, -1)  # NaN last
    counts = np.count_nonzero(~np.isnan(ordered), axis=0)
    out = np.full(ordered.shape[1], np.nan, dtype=np.float32)
    for n in np.flatnonzero(np.bincount(counts, minlength=t + 1)[1:]) + 1:
        cols = np.flatnonzero(counts == n)
        out[cols] = fn(ordered[:n, cols])
    return out.reshape(stack.shape[1:])


def _first(stack: np.ndarray) -> np.ndarray:
    i = np.argmax(~np.isnan(stack), axis=0)
    return np.take_along_axis(stack, i[None], axis=0)[0]


def _last(stack: np.ndarray) -> np.ndarray:
    return _first(stack[::-1])


_REDUCE: dict[str, Callable[[np.ndarray, float | None], np.ndarray]] = {
    "mean": lambda s, _: np.nanmean(s, axis=0),
    "median": lambda s, _: _median(s),
    "min": lambda s, _: np.nanmin(s, axis=0),
    "max": lambda s, _: np.nanmax(s, axis=0),
    "std": lambda s, _: np.nanstd(s, axis=0),
    "var": lambda s, _: np.nanvar(s, axis=0),
    "sum": lambda s, _: np.nansum(s, axis=0),
    "count": lambda s, _: np.count_nonzero(~np.isnan(s), axis=0),
    "percentile": lambda s, p: _by_count(s, lambda v: np.percentile(v, p, axis=0)),
    "mode": lambda s, _: _mode(s),
    "first": lambda s, _: _first(s),
    "last": lambda s, _: _last(s),
}
