"""Packed binary codes and exact Hamming search over them.

A K-bit code is K/8 bytes (`np.packbits` of the bits, first bit in the high bit of the
first byte): 8 bytes an item at K = 64, against 64 for a 16-d float32 vector. The
distance between two packed codes is popcount(a XOR b), summed over bytes
(`np.bitwise_count`, numpy >= 2.0). Search is exhaustive and exact; among equal
distances the lower database index ranks first, so results are reproducible and match
a stable sort of the distances.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ocog_lib.errors import InputError


@dataclass(frozen=True)
class HammingHits:
    indices: np.ndarray  # int64 (m, k): database rows, nearest first
    distances: np.ndarray  # int32 (m, k): their Hamming distances


def pack_codes(bits: np.ndarray) -> np.ndarray:
    """uint8 (n, K/8) rows of (n, K) bits (bool or 0/1), K a multiple of 8."""
    bits = np.asarray(bits)
    if bits.ndim != 2 or bits.shape[1] % 8 or not bits.shape[1]:
        raise InputError(f"codes {bits.shape}", "need (n, K) bits with K a multiple of 8")
    return np.packbits(bits.astype(bool), axis=1)


def unpack_codes(packed: np.ndarray) -> np.ndarray:
    """uint8 (n, K) bits of packed rows."""
    return np.unpackbits(_rows(packed, "codes"), axis=1)


def _rows(packed: np.ndarray, what: str) -> np.ndarray:
    packed = np.asarray(packed)
    if packed.dtype != np.uint8 or packed.ndim != 2:
        raise InputError(f"{what} {packed.dtype} {packed.shape}", "need uint8 (n, K/8) rows")
    return packed


def hamming_distances(queries: np.ndarray, database: np.ndarray) -> np.ndarray:
    """int32 (m, n) distances between packed codes."""
    q, db = _rows(queries, "queries"), _rows(database, "database")
    if q.shape[1] != db.shape[1]:
        raise InputError(f"queries of {8 * q.shape[1]} bits",
                         f"the database holds {8 * db.shape[1]}-bit codes")  # fmt: skip
    qw, dw = word_view(q), word_view(db)  # 8x fewer XORs and popcounts at K = 64
    x = np.bitwise_xor(qw[:, None, :], dw[None, :, :])
    return np.bitwise_count(x).sum(axis=2, dtype=np.int32)


def word_view(codes: np.ndarray) -> np.ndarray:
    """The packed codes as the widest unsigned words that divide a code (the same bits:
    a popcount does not care about their order)."""
    nbytes = codes.shape[1]
    size = next(w for w in (8, 4, 2, 1) if nbytes % w == 0)
    return np.ascontiguousarray(codes).view(f"<u{size}")


def hamming_search(queries: np.ndarray, database: np.ndarray, k: int, *,
                   exclude_self: bool = False, block: int = 256) -> HammingHits:  # fmt: skip
    """The k nearest database codes of each query, ties by index. `exclude_self`: the
    queries are the database's rows 0..m-1, each is left out of its own result."""
    q, db = _rows(queries, "queries"), _rows(database, "database")
    n = len(db) - (1 if exclude_self else 0)
    if k < 1 or n < 1:
        raise InputError(f"k {k}", f"need k >= 1 and a database to search ({len(db)} rows)")
    if exclude_self and len(q) > len(db):
        raise InputError("exclude_self", f"{len(q)} queries but {len(db)} database rows")
    k = min(k, n)
    idx, dist = [], []
    for s in range(0, len(q), block):
        d = hamming_distances(q[s : s + block], db).astype(np.int64)
        if exclude_self:
            d[np.arange(len(d)), np.arange(s, s + len(d))] = np.iinfo(np.int32).max
        key = d * len(db) + np.arange(len(db))  # distance first, then index: all distinct
        top = np.argpartition(key, k - 1, axis=1)[:, :k] if k < len(db) else np.tile(
            np.arange(len(db)), (len(d), 1))  # fmt: skip
        top = np.take_along_axis(top, np.argsort(np.take_along_axis(key, top, 1), 1), 1)
        idx.append(top)
        dist.append(np.take_along_axis(d, top, 1).astype(np.int32))
    if not idx:
        return HammingHits(np.empty((0, k), np.int64), np.empty((0, k), np.int32))
    return HammingHits(np.concatenate(idx).astype(np.int64), np.concatenate(dist))
