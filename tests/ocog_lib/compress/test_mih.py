"""Multi-index hashing returns exactly what the exhaustive scan returns: the same rows
and distances, ties by lower row, on random and clustered codes of 16 to 128 bits, for
the default and other substring counts, through both ways of probing a table."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocog_lib.compress import mih
from ocog_lib.compress.hamming import hamming_search, pack_codes, unpack_codes
from ocog_lib.compress.mih import MultiIndex, default_substrings, substring_bounds
from ocog_lib.errors import InputError


def _clustered(rng, n: int, bits: int, clusters: int, flip: float) -> np.ndarray:
    centres = rng.integers(0, 2, (clusters, bits))
    return pack_codes(centres[rng.integers(0, clusters, n)] ^ (rng.random((n, bits)) < flip))


def _same(index: MultiIndex, queries, db, k: int) -> None:
    got, want = index.search(queries, k), hamming_search(queries, db, k)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(got.distances, want.distances)
    assert got.indices.dtype == np.int64 and got.distances.dtype == np.int32


@pytest.mark.parametrize("bits", [16, 32, 64, 128])
@pytest.mark.parametrize("kind", ["random", "clustered"])
def test_equals_the_scan(bits, kind):
    rng = np.random.default_rng(bits)
    n = 2500
    if kind == "random":
        db, q = (rng.integers(0, 256, (size, bits // 8), dtype=np.uint8) for size in (n, 25))
    else:
        both = _clustered(rng, n + 25, bits, 12, 0.1)
        db, q = both[:n], both[n:]
    q = np.concatenate([q, db[[0, 7, n - 1]]])  # queries that are database rows too
    for m in [None, 2, 5] + ([1] if bits <= 64 else []):  # 128 bits need m >= 2
        index = MultiIndex.build(db, m)
        assert index.m == (default_substrings(n, bits) if m is None else m)
        for k in (1, 20):
            _same(index, q, db, k)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([16, 32, 64, 128]), st.integers(1, 400),
       st.integers(1, 30), st.floats(0.0, 0.5))  # fmt: skip
def test_equals_the_scan_property(seed, bits, n, k, flip):
    rng = np.random.default_rng(seed)
    codes = _clustered(rng, n + 5, bits, int(rng.integers(1, 6)), flip)
    _same(MultiIndex.build(codes[:n]), codes[n:], codes[:n], k)


def test_ties_go_to_the_lower_row_and_k_is_capped():
    db = np.repeat(np.array([[0, 0], [255, 255], [0, 1]], np.uint8), 4, axis=0)  # duplicates
    index = MultiIndex.build(db)
    hits = index.search(np.array([[0, 0]], np.uint8), 50)
    assert hits.indices.shape == (1, 12)
    assert hits.indices[0, :8].tolist() == [0, 1, 2, 3, 8, 9, 10, 11]
    assert hits.distances[0].tolist() == [0] * 4 + [1] * 4 + [16] * 4
    _same(index, db, db, 5)


def test_scanning_a_table_instead_of_enumerating_masks(monkeypatch):
    monkeypatch.setattr(mih, "_MAX_MASKS", 4)  # every wider probe scans the table's values
    rng = np.random.default_rng(1)
    db = _clustered(rng, 3000, 64, 8, 0.2)
    _same(MultiIndex.build(db, 2), db[:10] ^ np.uint8(3), db, 20)


def test_substrings():
    assert substring_bounds(64, 3) == ((0, 22), (22, 43), (43, 64))
    assert substring_bounds(128, 2) == ((0, 64), (64, 128))
    assert default_substrings(100_000, 64) == 4 and default_substrings(10**7, 64) == 3
    assert default_substrings(10**7, 32) == 1 and default_substrings(1, 128) == 128
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (50, 8), dtype=np.uint8)
    bits = unpack_codes(codes)
    keys = mih.substring_keys(codes, 5, 27)
    weights = np.uint64(1) << np.arange(21, -1, -1, dtype=np.uint64)  # first bit highest
    want = bits[:, 5:27].astype(np.uint64) @ weights
    np.testing.assert_array_equal(keys, want)


def test_bytes():
    db = np.random.default_rng(0).integers(0, 256, (1000, 8), dtype=np.uint8)
    index = MultiIndex.build(db, 4)  # 16-bit substrings: uint32 keys and rows
    assert index.nbytes == index.table_nbytes + db.nbytes
    assert 4 * 1000 * 4 <= index.table_nbytes <= 4 * 1000 * 12 + 4 * 4
    assert len(index) == 1000 and index.bits == 64


@pytest.mark.parametrize("codes, m, what", [
    (np.zeros((0, 8), np.uint8), None, "codes"), (np.zeros((4, 8), np.int16), None, "codes"),
    (np.zeros((4, 16), np.uint8), 1, "substrings m=1"), (np.zeros((4, 2), np.uint8), 17, "m=17"),
])  # fmt: skip
def test_bad_builds(codes, m, what):
    with pytest.raises(InputError, match=what):
        MultiIndex.build(codes, m)


def test_bad_searches():
    index = MultiIndex.build(np.zeros((4, 8), np.uint8))
    with pytest.raises(InputError, match="queries"):
        index.search(np.zeros((1, 4), np.uint8), 3)
    with pytest.raises(InputError, match="k 0"):
        index.search(np.zeros((1, 8), np.uint8), 0)
