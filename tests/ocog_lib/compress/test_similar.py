"""find_similar_by_hash over the tiny sample's archive: the query patch is the nearest
centre, the matches are numpy's brute-force Hamming ranking, the radius and time filters
hold, the search never reads a bitstream or a raster, and refusals name their input."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest
import rasterio

import ocog_lib.compress.archive as arch
import ocog_lib.compress.bitstream as bitstream
import ocog_lib.compress.hashing as hashing
import ocog_lib.stream.rasters as rasters
from ocog_lib.compress.hamming import unpack_codes
from ocog_lib.compress.similar import distances_km, find_similar_by_hash
from ocog_lib.embed.similar import (
    OutsideData,
    SimilarQuery,
    UnknownTime,
    format_similar,
    name_labels,
)
from tests.ocog_lib.compress.test_archive import archived_run, copy_db

CLASSES = {0: "water", 1: "vegetation", 2: "bare_soil", 3: "built_up"}


@pytest.fixture(scope="module")
def archived(train_variants, tmp_path_factory):
    return archived_run(train_variants, tmp_path_factory)


@pytest.fixture(scope="module")
def codes(archived):
    return arch.load_codes(archived.db, "sample")


def _point(codes, i: int) -> tuple[float, float]:
    """A point a little off patch i's centre (well inside its reach)."""
    return float(codes.lon[i]) + 0.0004, float(codes.lat[i]) - 0.0003


def _brute(codes, centre: int, k: int, keep: np.ndarray | None = None) -> list[tuple[int, float]]:
    """(idx, 1 - hamming / bits) of the k nearest codes, by numpy: distance, then idx."""
    bits = unpack_codes(codes.codes).astype(np.int64)
    ham = (bits != bits[centre]).sum(1)
    ok = np.ones(len(codes), bool) if keep is None else keep.copy()
    ok[centre] = False
    idx = np.flatnonzero(ok)
    order = idx[np.lexsort((idx, ham[idx]))][:k]
    return [(int(i), 1 - ham[i] / codes.bits) for i in order]


def _idx(codes, patch) -> int:
    hit = np.flatnonzero((codes.source == patch.source) & (codes.row == patch.row)
                         & (codes.col == patch.col))  # fmt: skip
    assert len(hit) == 1
    return int(hit[0])


def test_the_matches_are_the_brute_force_hamming_ranking(archived, codes):
    centre = 137
    lon, lat = _point(codes, centre)
    res = find_similar_by_hash(archived.db, SimilarQuery(lon, lat, k=12), classes=CLASSES)
    d = distances_km(codes.lon, codes.lat, lon, lat)
    assert _idx(codes, res.query_patch) == centre == int(np.argmin(d))
    assert res.query_patch.score is None and res.query_patch.distance_km == round(d[centre], 4)
    truth = _brute(codes, centre, 12)
    assert [_idx(codes, m) for m in res.matches] == [i for i, _ in truth]
    assert [m.score for m in res.matches] == [round(s, 6) for _, s in truth]
    assert [m.distance_km for m in res.matches] == [round(d[i], 4) for i, _ in truth]
    assert (res.dataset, res.model_id, res.dim, res.rows) == (
        "sample", archived.run.training.model_id, 16, 512)
    assert (res.method, res.index) == ("hamming", None)
    assert all(m.label_name == CLASSES.get(m.label) for m in res.matches)
    text = format_similar(name_labels(res, CLASSES))
    lines = text.splitlines()
    assert "(16-bit codes, 512 codes, hamming)" in lines[0] and len(lines) == 17
    assert lines[-1] == "(12 rows)"


def test_within_km_searches_only_the_patches_inside_the_radius(archived, codes):
    centre = 40
    lon, lat = _point(codes, centre)
    d = distances_km(codes.lon, codes.lat, lon, lat)
    q = SimilarQuery(lon, lat, k=500, within_km=1.5, model_id=archived.run.training.codec_id)
    res = find_similar_by_hash(archived.db, q)
    truth = _brute(codes, centre, 500, d <= 1.5)
    assert 0 < len(truth) < 500 and [_idx(codes, m) for m in res.matches] == [i for i, _ in truth]
    assert all(m.distance_km <= 1.5 for m in res.matches)


def test_the_search_reads_no_bitstream_and_no_raster(archived, codes, tmp_path, monkeypatch):
    lon, lat = _point(codes, 300)
    query = SimilarQuery(lon, lat, k=20, dataset="sample")
    before = find_similar_by_hash(archived.db, query)
    db = copy_db(archived, tmp_path).results_db
    with duckdb.connect(str(db)) as con:  # every stream replaced by garbage
        con.execute(f"UPDATE {arch.ARCHIVE_TABLE} SET bitstream = 'garbage'::BLOB")

    def refuse(*args, **kwargs):
        raise AssertionError("a bitstream or a raster was read")

    for module, name in ((bitstream, "decode"), (bitstream, "decode_latents"),
                         (arch, "decode"), (arch, "decode_latents"),
                         (hashing, "decode_latents"), (rasterio, "open"),
                         (rasters, "open_raster")):  # fmt: skip
        monkeypatch.setattr(module, name, refuse)
    assert find_similar_by_hash(db, query) == before
    np.testing.assert_array_equal(arch.load_codes(db, "sample").codes, codes.codes)
    with duckdb.connect(str(db)) as con:  # a query naming the column would now fail
        con.execute(f"ALTER TABLE {arch.ARCHIVE_TABLE} DROP COLUMN bitstream")
    assert find_similar_by_hash(db, query) == before
    np.testing.assert_array_equal(arch.load_codes(db, "sample").codes, codes.codes)


def test_a_time_selects_its_patches(archived, codes, tmp_path):
    db = copy_db(archived, tmp_path).results_db
    s2 = next(s for s in np.unique(codes.source) if "s2_" in s)
    with duckdb.connect(str(db)) as con:
        con.execute(f"UPDATE {arch.ARCHIVE_TABLE} SET time = TIMESTAMP '2024-05-01 10:00:00' "
                    "WHERE source = ?", [s2])  # fmt: skip
    i = int(np.flatnonzero(codes.source == s2)[50])
    lon, lat = _point(codes, i)
    for when in ("2024-05-01", "2024-05-01T10:00:00"):
        res = find_similar_by_hash(db, SimilarQuery(lon, lat, k=3, time=when))
        assert _idx(codes, res.query_patch) == i and res.query_patch.time == "2024-05-01T10:00:00"
    with pytest.raises(UnknownTime, match="2024-06-01.*times: 2024-05-01T10:00:00, none"):
        find_similar_by_hash(db, SimilarQuery(lon, lat, time="2024-06-01"))
    other = int(np.flatnonzero(codes.source != s2)[0])
    with pytest.raises(OutsideData, match="at time 2024-05-01.*no patch of sample at that time"):
        find_similar_by_hash(db, SimilarQuery(*_point(codes, other), time="2024-05-01"))
    with pytest.raises(UnknownTime, match="times: none"):
        find_similar_by_hash(archived.db, SimilarQuery(lon, lat, time="2024-05-01"))


def test_refusals_name_their_input(archived, tmp_path):
    with pytest.raises(OutsideData, match=r"lon=10 lat=50: outside every archive.*sample: "):
        find_similar_by_hash(archived.db, SimilarQuery(10.0, 50.0))
    with pytest.raises(arch.NoArchive, match="'other'"):
        find_similar_by_hash(archived.db, SimilarQuery(10.0, 50.0, dataset="other"))
    with pytest.raises(arch.NoArchive, match="model 'nope'"):
        find_similar_by_hash(archived.db, SimilarQuery(10.0, 50.0, model_id="nope"))
    with pytest.raises(arch.NoArchive, match="no results file"):
        find_similar_by_hash(tmp_path / "none.duckdb", SimilarQuery(10.0, 50.0))
