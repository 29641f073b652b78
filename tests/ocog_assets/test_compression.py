"""The compression domain materialized in-process by real Dagster on the tiny sample: the
three assets' metadata, the checks, the DuckDB rows they write, their order."""

import base64
import dataclasses
import io

import dagster as dg
import pytest
import torch

from ocog_assets.defs.common.resources import OcogPaths
from ocog_assets.defs.compression.assets import (
    CODES_MATCH_STREAMS,
    HASH_LEADS,
    CompressionModelConfig,
    compressed_archive,
    compression_models,
    hash_retrieval_quality,
)
from ocog_lib import results
from ocog_lib.compress.config import CompressConfig

ASSETS = [compression_models, compressed_archive, hash_retrieval_quality]
TINY = CompressionModelConfig(patch_size=32, channels=8, latents=8, hash_bits=16,
                              hash_width=8, batch_size=8, batches_per_epoch=4,
                              checkpoint_every=2, norm_batches=1, steps=6,
                              max_val_patches=128, device="cpu")  # fmt: skip


@pytest.fixture
def paths(sample_paths) -> OcogPaths:
    return sample_paths


def _materialize(selection, instance, paths) -> dg.ExecuteInProcessResult:
    config = {"compression_models": TINY} if compression_models in selection else {}
    return dg.materialize(ASSETS, selection=selection, partition_key="sample", instance=instance,
                          resources={"paths": paths}, raise_on_error=False,
                          run_config=dg.RunConfig(config))  # fmt: skip


def test_config_defaults_are_compress_configs():
    lib = {f.name: f.default for f in dataclasses.fields(CompressConfig) if f.name != "dataset"}
    assert CompressionModelConfig().model_dump() == lib


def test_the_three_assets_for_the_sample(instance, paths):
    torch.set_num_threads(2)
    res = _materialize(ASSETS, instance, paths)
    assert res.success
    meta = {a: res.asset_materializations_for_node(a)[0].metadata
            for a in ("compression_models", "compressed_archive", "hash_retrieval_quality")}
    model = meta["compression_models"]
    assert model["steps"].value == 6 and model["trained"].value
    mid = model["model_id"].value
    assert {m["model_id"].value for m in meta.values()} == {mid}

    archive = meta["compressed_archive"]
    codec_id = archive["codec_id"].value
    assert codec_id == model["codec_id"].value
    assert archive["patches"].value == 512 and archive["code_bits"].value == 16
    png = archive["rate_distortion"].value
    assert png.startswith("![bpp vs PSNR](data:image/png;base64,iVBOR")
    from PIL import Image

    assert Image.open(io.BytesIO(base64.b64decode(png.split(",", 1)[1][:-1]))).format == "PNG"
    table = archive["bytes"].value
    assert table.splitlines()[0] == "| form | bytes | bits_per_pixel | of_raw |"
    assert "| ZSTD tiles (lossless) |" in table and "| learned codec (bitstreams) |" in table
    checks = {c.check_name: c for c in res.get_asset_check_evaluations()}
    assert checks.keys() == {CODES_MATCH_STREAMS, HASH_LEADS}
    assert checks[CODES_MATCH_STREAMS].passed

    db = paths.settings().results_db
    _, rows = results.query(db, "SELECT count(*), sum(octet_length(bitstream)) FROM "
                            "compressed_patches WHERE dataset = 'sample' AND codec_id = ?",
                            [codec_id])  # fmt: skip
    n, stream_bytes = rows[0]
    assert n == 512
    _, summary = results.query(db, "SELECT patches, bitstream_bytes, bpp FROM "
                               "compressed_archives WHERE codec_id = ?", [codec_id])
    assert summary[0][:2] == (512, stream_bytes)
    assert summary[0][2] == pytest.approx(archive["bits_per_pixel"].value, abs=1e-4)

    _, rows = results.query(db, "SELECT method, baseline, dim, map_at_k FROM retrieval_quality"
                            " WHERE model_id = ? ORDER BY baseline", [mid])  # fmt: skip
    assert [r[:3] for r in rows] == [("hash", False, 16), ("random_codes", True, 16)]
    quality = meta["hash_retrieval_quality"]
    assert "| hash | 16 | 10 | " in quality["quality"].value
    assert checks[HASH_LEADS].passed == (rows[0][3] > rows[1][3])


def test_steps_after_training_need_a_trained_model(instance, paths):
    res = _materialize([compressed_archive], instance, paths)
    assert not res.success
    failure = res.get_step_failure_events()[0].event_specific_data.error
    assert "compression_models[sample] has no materialization yet" in failure.message


def test_the_job_runs_the_three_in_order():
    from ocog_assets.definitions import defs

    job = defs.resolve_job_def("compression_job")
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
    assert keys == {"compression_models", "compressed_archive", "hash_retrieval_quality"}
    parents = {k: {p.to_user_string() for p in graph.get(dg.AssetKey(k)).parent_keys}
               for k in keys}  # fmt: skip
    assert parents["compressed_archive"] == {"compression_models"}
    assert parents["hash_retrieval_quality"] == {"compressed_archive"}
    assert parents["compression_models"] == {"cog_variants"}
