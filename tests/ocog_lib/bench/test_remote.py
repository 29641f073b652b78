"""`bench compare --remote` end to end on tiny data: S3, shaper, rows and ceilings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocog_lib.bench.config import RemoteCompareConfig
from ocog_lib.bench.remote import compare_remote
from ocog_lib.bench.rows import check_remote_rows, format_comparison
from ocog_lib.data.locate import bench_files
from ocog_lib.remote.endpoint import ENDPOINT_VARS, resolve_endpoint, stop_embedded
from ocog_lib.remote.session import remote_session
from tests.support.benchdata import make_bench_variants
from tests.support.s3 import CREDENTIAL_VARS


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    # the patch-sized variant the comparison adds (spec lerc_zstd:level=9,block=128)
    patch_sized = dict(compress="LERC_ZSTD", max_z_error=0, level=9, blocksize=128)
    return make_bench_variants(
        tmp_path_factory.mktemp("remote_bench"), size=640, extra={"lerc_zstd_l9_b128": patch_sized}
    )


def _no_endpoint(monkeypatch, tmp_path: Path) -> None:
    """No endpoint and no AWS credentials configured: the embedded server, dummy keys."""
    for var in (*ENDPOINT_VARS, *CREDENTIAL_VARS, "OCOG_S3_BUCKET", "OCOG_S3_PORT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))


def test_remote_compare_rows_and_limits(settings, monkeypatch, tmp_path):
    _no_endpoint(monkeypatch, tmp_path)  # and none running: a server of the run's own
    cfg = RemoteCompareConfig(
        variants=("default", "optimal_remote"),
        caps_mb_s=(200.0,),
        rtt_ms=10,
        seconds=0.3,
        warmup_seconds=0.0,
        patch_size=128,
        batch_size=8,
        best_reuse=4,
        reference_configs=("default",),
        cache_mb=8,
    )
    comparison = compare_remote(cfg, settings)
    check_remote_rows(comparison)  # zero failed reads
    result = comparison.to_dict()
    json.dumps(result)  # one JSON object
    assert list(result) == ["run_id", "dataset", "storage", "rtt_ms", "caps_mb_s",
                            "endpoint_mb_s", "cache_mb", "decoded_gib", "compare", "rows"]
    printed = format_comparison(comparison)
    assert printed.startswith("dataset sample from S3 through the shaper: RTT 10 ms, caps ")
    assert "\n\ncap 200 MB/s\n" in printed and "wire bytes/sample" in printed
    rows = result["rows"]
    assert result["storage"] == "remote" and result["endpoint_mb_s"] > 0
    ours = [r for r in rows if r["loader"] == "ocog"]
    names = {(r["name"], r["variant"]) for r in ours}
    assert {("ocog random", "default"), ("ocog block reuse x4", "optimal_remote")} <= names
    # the engine's default over remote sources is a row of its own, for every sampler
    auto = [r for r in ours if r["config"]["auto_reuse"] and r["config"]["patches_per_tile"] > 1]
    # plus a variant whose tiles are the patch size, written for the comparison
    assert list(result["compare"]["variants"]) == ["default", "optimal_remote", "lerc_zstd_l9_b128"]
    assert {(r["sampler"], r["variant"]) for r in auto} == {
        (s, v)
        for s in ("random", "block")
        for v in ("default", "optimal_remote", "lerc_zstd_l9_b128")
    }
    # rows record the config the engine ran: random x32 over 256-px tiles visits 4 tiles
    # (2 MB decoded), so an 8 MB cache holds a shuffle group of 4 visits, not 32
    (rnd,) = [r for r in auto if r["sampler"] == "random" and r["variant"] == "default"]
    assert (rnd["config"]["patches_per_tile"], rnd["config"]["shuffle_tiles"]) == (32, 4)
    for r in ours:  # what the layout lets any loader move: tiles are fetched whole
        c = r["config"]
        plain = c["patches_per_tile"] == 1
        assert c["layout_bytes_per_sample"] > 0
        assert c["layout_limit_sps"] == pytest.approx(200e6 / c["layout_bytes_per_sample"])
        if plain:  # a plain window costs at least its own tile's bytes
            assert c["layout_limit_sps"] <= c["link_limit_sps"] * 1.05
    for r in ours:
        c = r["config"]
        assert c["cap_mb_s"] == 200.0 and c["rtt_ms"] == 10
        # tiny scenes: once the cache holds them, a timed window may fetch nothing
        assert c["wire_bytes_per_sample"] >= 0
        ceiling = min(x for x in (c["link_limit_sps"], c["decode_limit_sps"]) if x)
        assert r["ratio_vs_limit"] == pytest.approx(r["samples_per_s"] / ceiling)
        assert r["ratio_vs_reference_default"] > 0
        wire_mb_s = c["wire_bytes_per_sample"] * r["samples_per_s"] / 1e6
        assert c["link_utilization"] == pytest.approx(wire_mb_s / 200.0)
    links = {r["variant"]: r for r in rows if r["loader"] == "link_limit"}
    assert set(links) == {"default", "optimal_remote", "lerc_zstd_l9_b128"}
    assert all(r["config"]["compression_ratio"] > 1 for r in links.values())


def test_remote_compare_reads_the_one_bucket_layout(settings, monkeypatch, tmp_path):
    """With the long-lived embedded server running (as `remote_variants` and `ocog s3 serve`
    leave it), the comparison reads the variants' objects where a session put them
    (variants/<dataset>/<variant>/<relpath>), its HDF5 packages go to hdf5/bench/<dataset>/,
    and nothing lands anywhere else."""
    _no_endpoint(monkeypatch, tmp_path)
    served = resolve_endpoint(settings)  # started, detached, like `ocog s3 serve`
    try:
        images = bench_files("sample", "default", settings)[0]
        with remote_session(settings) as session:  # what remote_variants uploads through
            assert not session.own_server
            uploaded = session.upload_variant_files(
                "sample", "default", settings.variant_dir("sample", "default"), images
            )
        cfg = RemoteCompareConfig(
            variants=("default",), samplers=("random",), caps_mb_s=(200.0,), rtt_ms=10,
            seconds=0.3, warmup_seconds=0.0, patch_size=128, batch_size=8, best_reuse=1,
            patch_sized_tiles=False, reference_configs=("default",), cache_mb=8,
            hdf5=("gzip",), hdf5_workers=2, hdf5_samples=64,
        )  # fmt: skip
        comparison = compare_remote(cfg, settings)
        listed = served.client().list_objects_v2(Bucket=served.bucket).get("Contents", [])
        keys = sorted(o["Key"] for o in listed)
    finally:
        stop_embedded(settings)
    check_remote_rows(comparison)
    assert uploaded == [f"s3://ocog/variants/sample/default/{Path(p).name}" for p in images]
    variant_keys = [k for k in keys if k.startswith("variants/")]
    assert variant_keys == [u.removeprefix("s3://ocog/") for u in uploaded]
    hdf5_keys = [k for k in keys if k.startswith("hdf5/bench/sample/")]
    assert keys == sorted(variant_keys + hdf5_keys)  # no bench/ prefix, nothing else
    rows = comparison.to_dict()["rows"]
    (h5,) = [r for r in rows if r["loader"] == "hdf5"]
    c = h5["config"]
    assert h5["variant"] == "hdf5_gzip" and c["storage"] == "remote"
    assert c["package"].startswith("s3://ocog/hdf5/bench/sample/") and c["package"].endswith(".h5")
    assert c["package"].removeprefix("s3://ocog/") in hdf5_keys and len(hdf5_keys) > 1  # sidecars
    # a 64-sample package may sit whole in the workers' block caches after the warm-up
    assert h5["samples_per_s"] > 0 and c["wire_bytes_per_sample"] >= 0
    assert c["link_limit_sps"] > 0 and c["decode_limit_sps"] is None
    assert h5["ratio_vs_limit"] == pytest.approx(h5["samples_per_s"] / c["link_limit_sps"])
    link = next(r for r in rows if r["loader"] == "link_limit" and r["variant"] == "hdf5_gzip")
    assert link["config"]["compression_ratio"] > 1  # gzip of real pixels
