"""The embeddings domain materialized in-process by real Dagster on the tiny sample: the four
assets' metadata, the checks, the DuckDB rows they write, and their order."""

import base64
import dataclasses
import io
from pathlib import Path

import dagster as dg
import pytest
import torch

from ocog_assets.defs.common.resources import OcogPaths
from ocog_assets.defs.embeddings.assets import (
    ENCODER_LEADS,
    UNIT_NORM,
    VALID_H3_CELLS,
    EmbeddingModelConfig,
    embedding_index,
    embedding_models,
    patch_embeddings,
    retrieval_quality,
)
from ocog_lib import results
from ocog_lib.embed.config import EmbedConfig

ASSETS = [embedding_models, patch_embeddings, embedding_index, retrieval_quality]
TINY = EmbeddingModelConfig(patch_size=32, neighbour_px=16, distant_px=96, batch_size=8,
                            width=8, batches_per_epoch=4, checkpoint_every=2, norm_batches=1,
                            steps=4, max_val_patches=128, device="cpu")  # fmt: skip


@pytest.fixture
def paths(sample_paths) -> OcogPaths:
    return sample_paths


def _materialize(selection, instance, paths) -> dg.ExecuteInProcessResult:
    config = {"embedding_models": TINY} if embedding_models in selection else {}
    return dg.materialize(ASSETS, selection=selection, partition_key="sample", instance=instance,
                          resources={"paths": paths}, raise_on_error=False,
                          run_config=dg.RunConfig(config))  # fmt: skip


def test_config_defaults_are_embed_configs():
    lib = {f.name: f.default for f in dataclasses.fields(EmbedConfig)}
    ours = EmbeddingModelConfig().model_dump(exclude={"model_store"})
    assert ours == {k: lib[k] for k in ours}


def test_the_four_assets_for_the_sample(instance, paths):
    torch.set_num_threads(2)
    res = _materialize(ASSETS, instance, paths)
    assert res.success
    meta = {a: res.asset_materializations_for_node(a)[0].metadata
            for a in ("embedding_models", "patch_embeddings", "embedding_index",
                      "retrieval_quality")}  # fmt: skip
    model = meta["embedding_models"]
    assert model["steps"].value == 4 and model["trained"].value
    mid = model["model_id"].value
    assert {m["model_id"].value for m in meta.values()} == {mid}

    emb = meta["patch_embeddings"]
    assert (emb["count"].value, emb["dimension"].value, emb["h3_resolution"].value) == (
        512, 16, 8)  # 2 scenes x 16 x 16 windows of 32 px; 10 m x 32 px: resolution 8
    png = emb["pca_scatter"].value
    assert png.startswith("![PCA of the embeddings](data:image/png;base64,iVBOR")
    from PIL import Image

    assert Image.open(io.BytesIO(base64.b64decode(png.split(",", 1)[1][:-1]))).format == "PNG"
    checks = {c.check_name: c for c in res.get_asset_check_evaluations()}
    assert checks.keys() == {UNIT_NORM, VALID_H3_CELLS, ENCODER_LEADS}
    assert checks[UNIT_NORM].passed and checks[VALID_H3_CELLS].passed

    ix = meta["embedding_index"]
    assert ix["rows"].value == 512 and ix["action"].value == "built"
    assert Path(ix["path"].value).stat().st_size == ix["bytes"].value > 0

    db = paths.settings().results_db
    _, rows = results.query(db, "SELECT count(*), min(dim), max(dim) FROM patch_embeddings "
                            "WHERE dataset = 'sample' AND model_id = ?", [mid])  # fmt: skip
    assert rows == [(512, 16, 16)]
    _, rows = results.query(db, "SELECT method, baseline, map_at_k FROM retrieval_quality "
                            "WHERE model_id = ? ORDER BY baseline, method DESC", [mid])
    assert [r[:2] for r in rows] == [("encoder", False), ("random_projection", True),
                                     ("band_stats", True)]
    quality = meta["retrieval_quality"]
    table = quality["quality"].value
    assert table.splitlines()[0] == "| method | dim | k | precision_at_k | map_at_k | n_queries |"
    assert "| encoder | 16 | 10 | " in table and quality["dagster/row_count"].value == 3
    assert checks[ENCODER_LEADS].passed == (rows[0][2] > max(rows[1][2], rows[2][2]))

    # again, the stored set unchanged: the index is found fresh, not rebuilt
    again = _materialize([patch_embeddings, embedding_index], instance, paths)
    assert again.success
    ix2 = again.asset_materializations_for_node("embedding_index")[0].metadata
    assert ix2["action"].value == "loaded" and ix2["path"].value == ix["path"].value


def test_steps_after_training_need_a_trained_model(instance, paths):
    res = _materialize([patch_embeddings], instance, paths)
    assert not res.success
    failure = res.get_step_failure_events()[0].event_specific_data.error
    assert "embedding_models[sample] has no materialization yet" in failure.message


def test_the_job_runs_the_four_in_order():
    from ocog_assets.definitions import defs

    job = defs.resolve_job_def("embeddings_job")
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
    assert keys == {"embedding_models", "patch_embeddings", "embedding_index",
                    "retrieval_quality"}
    parents = {k: {p.to_user_string() for p in graph.get(dg.AssetKey(k)).parent_keys}
               for k in keys}  # fmt: skip
    assert parents["patch_embeddings"] == {"embedding_models"}
    assert parents["embedding_index"] == {"patch_embeddings"}
    assert parents["retrieval_quality"] == {"embedding_models"}
    assert parents["embedding_models"] == {"cog_variants"}
