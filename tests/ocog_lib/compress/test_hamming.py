"""Packed codes and exact Hamming search: the same neighbours, distances and tie order as a
brute force over unpacked bits."""

import numpy as np
import pytest

from ocog_lib.compress.hamming import (
    hamming_distances,
    hamming_search,
    pack_codes,
    unpack_codes,
)
from ocog_lib.errors import InputError


def _brute(q_bits: np.ndarray, db_bits: np.ndarray, k: int, exclude_self: bool):
    d = (q_bits[:, None, :] != db_bits[None, :, :]).sum(2)
    if exclude_self:
        d[np.arange(len(q_bits)), np.arange(len(q_bits))] = 10**9
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(d, order, 1)


@pytest.mark.parametrize("bits", [16, 64, 128])
def test_search_equals_brute_force_over_unpacked_bits(bits):
    rng = np.random.default_rng(bits)
    # few distinct codes, so distances tie often: the tie order is tested too
    base = rng.integers(0, 2, (12, bits), dtype=np.uint8)
    db_bits = base[rng.integers(0, 12, 300)] ^ (rng.random((300, bits)) < 0.05)
    db = pack_codes(db_bits)
    assert db.dtype == np.uint8 and db.shape == (300, bits // 8)
    assert np.array_equal(unpack_codes(db), db_bits)
    for exclude_self, queries in ((False, db_bits[-40:]), (True, db_bits[:70])):
        hits = hamming_search(pack_codes(queries), db, 25, exclude_self=exclude_self, block=16)
        order, dist = _brute(queries.astype(bool), db_bits.astype(bool), 25, exclude_self)
        assert np.array_equal(hits.indices, order)
        assert np.array_equal(hits.distances, dist)
    full = hamming_distances(db[:5], db)
    assert np.array_equal(full, (db_bits[:5, None] != db_bits[None]).sum(2))


def test_k_is_capped_and_bad_input_named():
    db = pack_codes(np.eye(16, dtype=np.uint8)[:3])
    hits = hamming_search(db, db, 10, exclude_self=True)
    assert hits.indices.shape == (3, 2) and (hits.distances == 2).all()
    assert hits.indices.tolist() == [[1, 2], [0, 2], [0, 1]]
    with pytest.raises(InputError, match="multiple of 8"):
        pack_codes(np.zeros((2, 12)))
    with pytest.raises(InputError, match="uint8"):
        hamming_search(np.zeros((1, 2)), db, 1)
    with pytest.raises(InputError, match="bit codes"):
        hamming_distances(pack_codes(np.zeros((1, 24))), db)
    with pytest.raises(InputError, match="k 0"):
        hamming_search(db, db, 0)
