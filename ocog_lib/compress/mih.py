"""Multi-index hashing: exact k nearest neighbours in Hamming space without a full scan.

Norouzi, Punjani & Fleet, "Fast Search in Hamming Space with Multi-Index Hashing",
CVPR 2012. A K-bit code is cut into m disjoint contiguous substrings (lengths differing
by at most one bit); each substring gets a table from its value to the database rows
holding it. Pigeonhole: if two codes differ in r = m r' + a bits (0 <= a < m), then one
of substrings 0..a differs in at most r' bits, or one of substrings a+1..m-1 in at most
r' - 1 (otherwise the total would be at least (a+1)(r'+1) + (m-a-1) r' > r). So growing
r by one probes one more table one bit further: step r probes substring a = r mod m at
exactly r' = r // m bits from the query's substring, and after step r every database
code within distance r of the query has been found. Each found code is verified with its
full popcount distance; the search stops once k found codes lie within r: every code at
or below the k-th distance has then been seen, so the k nearest, ties by lower row, are
exactly `hamming.hamming_search`'s.

m defaults to round(K / log2 n) (the paper's choice, substrings of about log2 n bits: as
many buckets as items, so a bucket holds O(1) codes on uniform codes), at least
ceil(K / 64) so a substring fits a uint64.

Tables are numpy arrays, no Python object per item: the distinct substring values
ascending (uint32 for substrings up to 32 bits, else uint64), `offsets` into the rows
sorted by value (stable, so a bucket lists its rows ascending; uint32 below 2^32 rows),
searched with `np.searchsorted`. Besides the codes (K/8 bytes an item) that costs up to
12 bytes an item per table (row, value, offset; 16 with uint64 values; less where
values repeat): MIH trades memory for not reading every code. A search allocates one
n-byte scratch mask (codes already verified), cleared after each query.

The keys at exactly r' bits from a query substring are the query XOR every r'-bit mask
of the substring's width, enumerated while there are no more of them than the table has
distinct values; past that the table's values are scanned instead (popcount of value
XOR query == r'), so a probe never costs more than one pass over its table. Codes are
verified on the widest machine words that divide the code (uint64 for K a multiple of
64): the same distances as the per-byte popcount.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import numpy as np

from ocog_lib.compress.hamming import HammingHits, word_view
from ocog_lib.errors import InputError

_CHUNK = 1 << 18  # rows whose substrings are extracted at once
_MAX_MASKS = 1 << 20  # most masks enumerated (and cached) for one probe


@dataclass(frozen=True)
class _Table:
    keys: np.ndarray  # (u,) distinct substring values, ascending (uint32 up to 32 bits)
    offsets: np.ndarray  # (u + 1,) rows[offsets[i]:offsets[i + 1]] hold keys[i]
    rows: np.ndarray  # (n,) database rows ordered by substring value, then row

    @property
    def nbytes(self) -> int:
        return int(self.keys.nbytes + self.offsets.nbytes + self.rows.nbytes)


def default_substrings(n: int, bits: int) -> int:
    """The paper's m = K / log2 n, rounded, within ceil(K / 64)..K."""
    m = round(bits / max(math.log2(max(n, 2)), 1.0))
    return int(min(bits, max(m, -(-bits // 64), 1)))


def substring_bounds(bits: int, m: int) -> tuple[tuple[int, int], ...]:
    """(first bit, end bit) of each of m contiguous substrings, the longer ones first."""
    if not 1 <= m <= bits or -(-bits // m) > 64:
        raise InputError(f"substrings m={m}", f"need 1 <= m <= {bits} and at most 64 bits "
                         f"a substring (m >= {-(-bits // 64)}) for {bits}-bit codes")  # fmt: skip
    sizes = [bits // m + (1 if j < bits % m else 0) for j in range(m)]
    ends = np.cumsum(sizes).tolist()
    return tuple((e - s, e) for s, e in zip(sizes, ends, strict=True))


def substring_keys(codes: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """uint64 (n,) value of bits lo..hi-1 of each packed code (first bit highest)."""
    b0, b1, width = lo // 8, -(-hi // 8), hi - lo
    out = np.empty(len(codes), dtype=np.uint64)
    for a in range(0, len(codes), _CHUNK):
        bits = np.unpackbits(codes[a : a + _CHUNK, b0:b1], axis=1)[:, lo - 8 * b0 : hi - 8 * b0]
        padded = np.zeros((len(bits), 64), dtype=np.uint8)
        padded[:, 64 - width :] = bits
        out[a : a + len(bits)] = np.packbits(padded, axis=1).view(">u8")[:, 0]
    return out


def _table(keys: np.ndarray, width: int, row_dtype: type) -> _Table:
    order = np.argsort(keys, kind="stable")
    keys = keys.astype(np.uint32) if width <= 32 else keys
    ordered = keys[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if len(keys) else (
        np.empty(0, np.int64))  # fmt: skip
    offsets = np.r_[starts, len(keys)].astype(row_dtype)
    return _Table(ordered[starts], offsets, order.astype(row_dtype))


@functools.lru_cache(maxsize=128)
def _masks(width: int, radius: int) -> np.ndarray:
    """uint64 masks with exactly `radius` of the low `width` bits set."""
    combos = itertools.combinations(range(width), radius)
    return np.fromiter((sum(1 << b for b in c) for c in combos), dtype=np.uint64,
                       count=math.comb(width, radius))  # fmt: skip


def _gather(rows: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """rows[starts[i]:ends[i]] for every i, concatenated (int64)."""
    lens = ends - starts
    total = int(lens.sum())
    if not total:
        return np.empty(0, dtype=np.int64)
    shift = np.repeat(starts - np.cumsum(lens) + lens, lens)
    return rows[np.arange(total, dtype=np.int64) + shift].astype(np.int64)


class MultiIndex:
    """Exact k-NN over packed codes by multi-index hashing (see the module)."""

    def __init__(self, codes: np.ndarray, bounds: tuple[tuple[int, int], ...],
                 tables: tuple[_Table, ...]) -> None:  # fmt: skip
        self.codes = codes
        self.bounds = bounds
        self.tables = tables
        self._words = word_view(codes)

    @classmethod
    def build(cls, codes: np.ndarray, m: int | None = None) -> MultiIndex:
        """Tables over uint8 (n, K/8) packed codes; m substrings (default: see module)."""
        codes = np.asarray(codes)
        if codes.dtype != np.uint8 or codes.ndim != 2 or not codes.shape[1] or not len(codes):
            raise InputError(f"codes {codes.dtype} {codes.shape}",
                             "need uint8 (n, K/8) packed codes, n >= 1")  # fmt: skip
        codes = np.ascontiguousarray(codes)
        bits = 8 * codes.shape[1]
        bounds = substring_bounds(bits, default_substrings(len(codes), bits) if m is None else m)
        row_dtype = np.uint32 if len(codes) < 2**32 else np.int64
        tables = tuple(_table(substring_keys(codes, lo, hi), hi - lo, row_dtype)
                       for lo, hi in bounds)  # fmt: skip
        return cls(codes, bounds, tables)

    @property
    def bits(self) -> int:
        return 8 * self.codes.shape[1]

    @property
    def m(self) -> int:
        return len(self.tables)

    @property
    def table_nbytes(self) -> int:
        """Bytes of the substring tables alone."""
        return sum(t.nbytes for t in self.tables)

    @property
    def nbytes(self) -> int:
        """Bytes the index holds: the tables and the codes they verify against."""
        return self.table_nbytes + int(self.codes.nbytes)

    def __len__(self) -> int:
        return len(self.codes)

    def search(self, queries: np.ndarray, k: int) -> HammingHits:
        """The k nearest codes of each query, ties by lower row: `hamming_search`'s."""
        q = np.asarray(queries)
        if q.dtype != np.uint8 or q.ndim != 2 or q.shape[1] != self.codes.shape[1]:
            raise InputError(f"queries {q.dtype} {q.shape}",
                             f"need uint8 (m, {self.codes.shape[1]}) packed {self.bits}-bit "
                             "codes, as the index holds")  # fmt: skip
        if k < 1:
            raise InputError(f"k {k}", "must be at least 1")
        k = min(k, len(self.codes))
        keys = np.stack([substring_keys(q, lo, hi) for lo, hi in self.bounds], axis=1)
        qwords = word_view(q)
        seen = np.zeros(len(self.codes), dtype=bool)  # scratch, reset after each query
        idx = np.empty((len(q), k), dtype=np.int64)
        dist = np.empty((len(q), k), dtype=np.int32)
        for i in range(len(q)):
            idx[i], dist[i] = self._nearest(qwords[i], keys[i], k, seen)
        return HammingHits(idx, dist)

    def _probe(self, j: int, key: np.uint64, radius: int) -> np.ndarray:
        """Rows whose substring j is exactly `radius` bits from `key`."""
        t = self.tables[j]
        lo, hi = self.bounds[j]
        key = key.astype(t.keys.dtype)
        if math.comb(hi - lo, radius) <= min(len(t.keys), _MAX_MASKS):
            probes = _masks(hi - lo, radius).astype(t.keys.dtype) ^ key
            pos = np.searchsorted(t.keys, probes)
            inside = pos < len(t.keys)
            pos = pos[inside]
            hit = pos[t.keys[pos] == probes[inside]]
        else:
            hit = np.flatnonzero(np.bitwise_count(t.keys ^ key) == radius)
        return _gather(t.rows, t.offsets[hit].astype(np.int64),
                       t.offsets[hit + 1].astype(np.int64))  # fmt: skip

    def _nearest(self, qwords: np.ndarray, keys: np.ndarray, k: int, seen: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """One query's k nearest rows and distances; `seen` is all False again after."""
        rows_found: list[np.ndarray] = []
        dists: list[np.ndarray] = []
        per_distance = np.zeros(self.bits + 1, dtype=np.int64)  # verified codes by distance
        try:
            for r in range(self.bits + 1):  # after step r, every code within r is found
                radius, j = divmod(r, self.m)
                lo, hi = self.bounds[j]
                if radius <= hi - lo:
                    rows = self._probe(j, keys[j], radius)
                    rows = rows[~seen[rows]]
                    if len(rows):
                        seen[rows] = True
                        d = np.bitwise_count(self._words[rows] ^ qwords).sum(1, dtype=np.int32)
                        rows_found.append(rows)
                        dists.append(d)
                        per_distance += np.bincount(d, minlength=self.bits + 1)
                if per_distance[: r + 1].sum() >= k:
                    break
        finally:
            for rows in rows_found:
                seen[rows] = False
        return _top_k(np.concatenate(rows_found), np.concatenate(dists), k, len(self.codes))


def _top_k(rows: np.ndarray, dists: np.ndarray, k: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The k smallest (distance, row) of the verified codes, nearest first."""
    key = dists.astype(np.int64) * n + rows
    top = np.argpartition(key, k - 1)[:k] if k < len(key) else np.arange(len(key))
    top = top[np.argsort(key[top])]
    return rows[top], dists[top]
