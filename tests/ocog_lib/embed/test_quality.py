"""The learning test: a briefly trained encoder retrieves same-label patches better than
both baselines, on held-out patches it never saw.

The data: the sample's real Sentinel-2 scene, cropped to 768 px around its centre (water,
vegetation, bare soil; 144 held-out 32-px patches). The Landsat crop of the tiny sample is
left out because it is vegetation almost everywhere: every method scores 1.0 on its
patches, which only dilutes the comparison.
"""

import dataclasses

import pytest
import torch

from ocog_lib.embed.config import EmbedConfig
from ocog_lib.embed.quality import measure_quality, quality_rows
from ocog_lib.embed.train import train_encoder
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings
from tests.support.variants import single_s2_scene

MARGIN = 0.02  # mAP@10 the encoder must lead each baseline by
LEARN = EmbedConfig(patch_size=32, neighbour_px=32, distant_px=96, batch_size=32, width=16,
                    steps=100, budget_s=600.0, device="cpu", seed=0)  # fmt: skip


@pytest.fixture(scope="module")
def s2_scene(tiny_sample, tmp_path_factory) -> Settings:
    return single_s2_scene(tiny_sample, tmp_path_factory.mktemp("s2_768"), LEARN.variant)


@pytest.fixture(scope="module")
def measured(s2_scene):
    torch.set_num_threads(1)
    result = train_encoder(LEARN, s2_scene)
    return result, {q.method: q for q in measure_quality(result.model_path, s2_scene, k=10)}


def test_trained_encoder_beats_both_baselines(measured):
    result, q = measured
    assert set(q) == {"encoder", "random_projection", "band_stats"}
    assert result.steps == LEARN.steps and result.val_patches == 144
    enc = q["encoder"]
    assert (enc.dim, enc.k, enc.n_queries) == (16, 10, 144)
    assert q["band_stats"].dim == 8 and q["random_projection"].dim == 16
    for base in ("random_projection", "band_stats"):
        assert enc.map_at_k >= q[base].map_at_k + MARGIN, {m: r.map_at_k for m, r in q.items()}
        assert enc.precision_at_k > q[base].precision_at_k, q


def test_rows_and_bad_requests(measured, s2_scene):
    result, q = measured
    rows = quality_rows(list(q.values()))
    assert {r["model_id"] for r in rows} == {result.model_id}
    assert sorted(r["method"] for r in rows if r["baseline"]) == ["band_stats",
                                                                  "random_projection"]
    with pytest.raises(InputError, match="k 0"):
        measure_quality(result.model_path, s2_scene, k=0)
    other = dataclasses.replace(LEARN, variant="default")
    with pytest.raises(InputError, match="not written yet"):
        train_encoder(other, s2_scene)
