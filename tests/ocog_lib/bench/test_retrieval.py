"""`bench retrieval`: the synthetic data, every scale method's row (MIH equal to the scan),
the quality part's pieces on synthetic data and end to end with tiny trained models, the
goal, and the rows in retrieval_benchmarks."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from ocog_lib import results
from ocog_lib.bench import retrieval as br
from ocog_lib.compress.hamming import hamming_search, unpack_codes
from ocog_lib.data.lineage import model_hash
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings

SMALL = br.RetrievalBenchConfig(sizes=(1500, 4000), bits=(16, 64), queries=12, k=5,
                                clusters=20, methods=br.METHODS)  # fmt: skip


def test_clustered_codes_flip_bits_around_shared_centres():
    cfg = dataclasses.replace(SMALL, clusters=3, flip=0.1)
    db, q = br.clustered_codes(6000, 64, cfg, 1), br.clustered_codes(50, 64, cfg, 2)
    assert db.dtype == np.uint8 and db.shape == (6000, 8) and q.shape == (50, 8)
    np.testing.assert_array_equal(db, br.clustered_codes(6000, 64, cfg, 1))  # seeded
    nearest = hamming_search(q, db, 1).distances[:, 0]
    assert nearest.max() < 10  # queries sit in the database's clusters
    # around its centre each bit flips with p = 0.1: two items of a cluster differ in
    # each bit with 2 p (1 - p) = 0.18, unrelated codes in half of them
    bits = unpack_codes(db).astype(np.int32)
    d = np.abs(bits[:, None, :] - bits[None, :60, :]).sum(2)
    assert 0.15 * 64 < np.median(d[d < 20]) < 0.21 * 64 and d.max() > 20


def test_clustered_vectors_are_as_spread_as_the_codes():
    cfg = dataclasses.replace(SMALL, clusters=1, dim=16, flip=0.1)
    v = br.clustered_vectors(4000, cfg, 1)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    centre = v.mean(0) / np.linalg.norm(v.mean(0))
    angle = np.degrees(np.arccos(np.clip(v @ centre, -1, 1)))
    assert 14 < np.median(angle) < 22  # about pi x flip = 18 degrees from the centre


def test_every_scale_method_at_every_size():
    result = br.bench_retrieval_scale(SMALL)
    hashes = [(m, n, b) for n in SMALL.sizes for b in SMALL.bits for m in br.HASH_METHODS]
    floats = [(m, n, None) for n in SMALL.sizes for m in br.FLOAT_METHODS]
    got = [(r.method, r.n, r.bits) for r in result.rows]
    assert sorted(got, key=str) == sorted(hashes + floats, key=str)
    for r in result.rows:
        assert r.kind == "scale" and r.k == 5 and r.queries == 12
        assert r.p50_ms > 0 and r.p95_ms >= r.p50_ms and r.index_bytes > 0
        if r.method != "float_hnsw":
            assert r.recall_at_k == 1.0, r  # exact methods
        if r.method == "hamming_mih":
            assert r.extra["equals_scan"] and r.extra["verified_queries"] == 12
            assert r.index_bytes > r.n * r.bits // 8 and r.build_s >= 0
        elif r.method == "hamming_scan":
            assert r.bytes_per_item == r.bits / 8
        elif r.method == "float_exact":
            assert r.bytes_per_item == 64 and r.dim == 16
    assert result.config["noise"] == pytest.approx(SMALL.noise)
    text = br.format_retrieval_bench(result)
    assert "recall@k" in text and "(12 rows)" in text and "equals scan: True" in text


def test_large_sizes_time_a_subset_of_queries(monkeypatch):
    monkeypatch.setattr(br, "SCAN_ALL_UP_TO", 1000)
    cfg = dataclasses.replace(SMALL, sizes=(1500,), bits=(32,), scan_queries=4,
                              methods=("hamming_scan", "hamming_mih", "float_exact"))
    rows = {r.method: r for r in br.bench_retrieval_scale(cfg).rows}
    assert rows["hamming_scan"].queries == rows["float_exact"].queries == 4
    assert "first 4 of 12" in rows["hamming_scan"].extra["queries_subset"]
    assert rows["hamming_mih"].queries == 12 and rows["hamming_mih"].extra["verified_queries"] == 4


def test_simhash_keeps_angles():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((500, 16)).astype(np.float32)
    b = a + 0.3 * rng.standard_normal((500, 16)).astype(np.float32)
    codes_a, codes_b = br.simhash(a, 256, seed=1), br.simhash(b, 256, seed=1)
    assert codes_a.shape == (500, 32) and codes_a.dtype == np.uint8
    np.testing.assert_array_equal(codes_a, br.simhash(2 * a, 256, seed=1))  # scale-free
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    expected = np.arccos(cos).mean() / np.pi  # P(bit differs) = angle / pi
    flipped = (unpack_codes(codes_a) != unpack_codes(codes_b)).mean()
    assert abs(flipped - expected) < 0.01
    with pytest.raises(InputError, match="simhash"):
        br.simhash(a, 12)


def _row(method, map_at_k, bytes_per_item):
    return br.RetrievalRow(kind="quality", method=method, k=20, map_at_k=map_at_k,
                           bytes_per_item=bytes_per_item)  # fmt: skip


def test_goal_needs_both_the_map_and_the_bytes():
    flt = _row("float_embedding", 0.60, 64.0)
    assert br.with_goal(flt, flt) is flt
    met = br.with_goal(_row("hash", 0.56, 4.0), flt).extra
    assert met["goal_met"] and met["bytes_ratio_to_float"] == 16.0
    assert met["map_gap_to_float"] == pytest.approx(0.04)
    assert not br.with_goal(_row("hash", 0.56, 8.0), flt).extra["goal_met"]  # only 8x
    assert not br.with_goal(_row("hash", 0.54, 4.0), flt).extra["goal_met"]  # 6 points


def test_scored_rows_on_synthetic_codes_and_vectors():
    labels = np.repeat(np.arange(4), 25).astype(np.int16)
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, 16)).astype(np.float32)
    v = centres[labels] + 0.2 * rng.standard_normal((100, 16)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    flt = br._scored("float_embedding", v, labels, 10, 32, 0.5, "d", {})
    code = br._scored("decoded_pixel_hash", br.simhash(v, 32), labels, 10, 32, 1.0, "d", {})
    assert (flt.dim, flt.bits, flt.bytes_per_item, flt.n, flt.queries) == (16, None, 64, 100, 100)
    assert (code.dim, code.bits, code.bytes_per_item, code.index_bytes) == (None, 32, 4, 400)
    assert flt.map_at_k > 0.9 and code.map_at_k > 0.5


def test_rows_go_to_retrieval_benchmarks(tmp_path):
    cfg = dataclasses.replace(SMALL, sizes=(1000,), bits=(32,),
                              methods=("hamming_scan", "hamming_mih"))  # fmt: skip
    result = br.bench_retrieval_scale(cfg)
    result = br.with_rows(result, [br.with_goal(_row("hash", 0.5, 4.0),
                                                _row("float_embedding", 0.6, 64.0))],
                          quality={"k": 20})  # fmt: skip
    settings = Settings(data_dir=tmp_path, results_db=tmp_path / "r.duckdb")
    assert br.record_retrieval(result, settings) == 3
    _, rows = results.query(settings.results_db, "SELECT kind, method, bits, bytes_per_item, "
                            "recall_at_k, config FROM retrieval_benchmarks ORDER BY method")
    assert [r[:3] for r in rows] == [("scale", "hamming_mih", 32), ("scale", "hamming_scan", 32),
                                     ("quality", "hash", None)]  # fmt: skip
    config = [json.loads(r[5]) for r in rows]
    assert config[0]["equals_scan"] is True and config[0]["sizes"] == [1000]
    assert config[2]["goal_met"] is False and config[2]["quality"] == {"k": 20}


@pytest.mark.parametrize("kw, what", [({"sizes": ()}, "sizes"), ({"bits": (12,)}, "bits"),
                                      ({"k": 0}, "k 0"), ({"sizes": (4,)}, "k 5"),
                                      ({"methods": ("faiss",)}, "methods"),
                                      ({"flip": 0.5}, "flip"), ({"dim": 1}, "dim"),
                                      ({"substrings": -1}, "substrings")])  # fmt: skip
def test_bad_configs(kw, what):
    with pytest.raises(InputError, match=what):
        dataclasses.replace(SMALL, **kw)


# --- the quality part end to end, with tiny trained models ------------------------------


@pytest.fixture(scope="module")
def tiny_models(train_variants, tmp_path_factory):
    """A 16-bit and a 32-bit codec and an encoder, a few steps each, on the tiny sample
    (the shared variants, this module's own models folder)."""
    from ocog_lib.compress.config import CompressConfig
    from ocog_lib.compress.train import train_codec
    from ocog_lib.embed.config import EmbedConfig
    from ocog_lib.embed.train import train_encoder

    data = tmp_path_factory.mktemp("retrieval") / "data"
    data.mkdir()
    (data / "variants").symlink_to(train_variants.data_dir / "variants", target_is_directory=True)
    settings = Settings(data_dir=data, results_db=data / "ocog.duckdb")
    torch.set_num_threads(1)
    codec = CompressConfig(patch_size=32, channels=8, latents=8, hash_width=8, batch_size=8,
                           batches_per_epoch=4, checkpoint_every=4, norm_batches=1, steps=4,
                           max_val_patches=48, budget_s=600.0, device="cpu")  # fmt: skip
    codecs = [train_codec(dataclasses.replace(codec, hash_bits=b), settings).model_path
              for b in (16, 32)]  # fmt: skip
    encoder = EmbedConfig(patch_size=32, neighbour_px=16, distant_px=96, batch_size=8, width=8,
                          batches_per_epoch=4, checkpoint_every=4, norm_batches=1, steps=4,
                          max_val_patches=48, budget_s=600.0, device="cpu",
                          variant=codec.variant)  # fmt: skip
    return settings, codecs, train_encoder(encoder, settings).model_path


def test_quality_rows_of_tiny_models(tiny_models):
    settings, codecs, encoder = tiny_models
    assert br.newest_models(settings, "sample") == (codecs, encoder)
    rows = br.bench_retrieval_quality(codecs, encoder, settings, k=5)
    got = [(r.method, r.bits) for r in rows]
    assert got == [("hash", 16), ("float_embedding", None), ("decoded_pixel_hash", 16),
                   ("random_codes", 16), ("hash", 32), ("decoded_pixel_hash", 32),
                   ("random_codes", 32)]  # one float row: both codecs hold out the same set
    flt = rows[1]
    assert flt.dim == 16 and flt.bytes_per_item == 64 and flt.encode_ms_per_item > 0
    for r in rows:
        assert r.kind == "quality" and r.k == 5 and r.dataset == "sample"
        assert 0 <= r.map_at_k <= 1 and 0 <= r.precision_at_k <= 1 and r.queries > 1
        if r.method != "float_embedding":
            assert r.bytes_per_item == r.bits / 8 and isinstance(r.extra["goal_met"], bool)
            gap = flt.map_at_k - r.map_at_k
            assert r.extra["map_gap_to_float"] == pytest.approx(gap)
        if r.method in ("hash", "decoded_pixel_hash"):
            assert r.encode_ms_per_item > 0
    assert rows[0].extra["same_split"] is True
    # lineage: each row names the codec model file it measured; scale rows (synthetic) none
    assert [r.content_hash for r in rows] == [model_hash(codecs[0])] * 4 + [
        model_hash(codecs[1])] * 3
    assert br.retrieval_rows_for_db(br.RetrievalBench("r", {}, rows[:1]), {}, None)[0][
        "content_hash"] == model_hash(codecs[0])
    text = br.format_retrieval_bench(br.RetrievalBench("r", {"k": 5}, rows))
    assert "decoded_pixel_hash" in text and "goal_met" in text and "(7 rows)" in text
