"""Which files a trial streams: custom variants written once from the prepared scenes;
remote trials read the objects `remote_variants` uploads, through the WAN shaper."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import rasterio

from ocog_lib import results
from ocog_lib.cog.profiles import profile_from_spec
from ocog_lib.data.lineage import verify_folder
from ocog_lib.remote.endpoint import resolve_endpoint
from ocog_lib.remote.session import variant_uri
from ocog_lib.remote.upload import upload_dir
from ocog_lib.search.bayes import run_bayesian
from ocog_lib.search.files import trial_files
from ocog_lib.search.measure import measure_config
from ocog_lib.search.space import TrialConfig
from tests.support.s3 import BUCKET
from tests.support.search import QUICK, SMALL, quick_options


def test_custom_variant_is_written_once_with_the_source_pixels(fresh_search_data):
    space = replace(SMALL, codecs=("zstd",), levels={"zstd": (1,)}, predictors=(2,),
                    block_sizes=(256,))  # fmt: skip
    result = run_bayesian("sample", "local", 2, 0, fresh_search_data, **QUICK,
                          options=quick_options(space=space, baselines=False,
                                                prune=False))  # fmt: skip
    assert [t.state for t in result.trials] == ["COMPLETE", "COMPLETE"]
    name = profile_from_spec("zstd:level=1,predictor=2,block=256").name
    assert {t.config["variant"] for t in result.trials} == {name}
    folder = fresh_search_data.variant_dir("sample", name)
    written = sorted(p.name for p in folder.iterdir())
    assert written == ["bench_0.tif", "bench_0_mask.tif", "bench_1.tif", "bench_1_mask.tif",
                       "content.json", "manifest.json"]  # fmt: skip
    recorded = verify_folder(folder)  # each trial's row names the bytes it streamed
    assert {t.content_hash for t in result.trials} == {recorded}
    assert results.query(fresh_search_data.results_db,
                         "SELECT DISTINCT content_hash FROM search_trials")[1] == [(recorded,)]
    for item in ("bench_0.tif", "bench_1.tif"):
        with rasterio.open(folder / item) as a, rasterio.open(
            fresh_search_data.prepared_dir("sample") / item
        ) as b:
            assert a.compression.name.lower() == "zstd" and a.block_shapes[0] == (256, 256)
            assert np.array_equal(a.read(), b.read())


def test_one_remote_trial_through_the_shaper(search_data):
    """No endpoint configured, none running: the session's own server, stopped after."""
    space = replace(SMALL, codecs=("none",), block_sizes=(256,), max_workers=0)
    result = run_bayesian("sample", "remote", 1, 0, search_data, **QUICK,
                          options=quick_options(space=space, baselines=False))  # fmt: skip
    (trial,) = result.trials
    assert trial.state == "COMPLETE" and trial.value > 0
    assert 8 <= trial.config["io_threads"] <= 128


def _objects(client) -> dict[str, str]:
    listed = client.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {o["Key"]: o["ETag"] for o in listed}


def test_remote_trials_read_the_objects_remote_variants_uploads(
    search_data, s3, s3_env, monkeypatch
):
    """After `remote_variants` uploaded a variant (its folder to
    s3://<bucket>/variants/<dataset>/<variant>/), a remote trial streams those very objects
    from the configured endpoint's bucket: same keys, nothing uploaded again, no key of
    its own (nothing under search/)."""
    monkeypatch.setenv("OCOG_S3_BUCKET", BUCKET)
    name = "optimal_remote"
    folder = search_data.variant_dir("sample", name)
    endpoint = resolve_endpoint(search_data, start=False)  # what the ObjectStore resolves
    upload_dir(folder, variant_uri(BUCKET, "sample", name), client_opts=endpoint.client_opts())
    client = s3.client()
    before = _objects(client)

    cfg = TrialConfig(codec="lerc_zstd", block_size=256, patch_size=128, batch_size=4,
                      threads=1, io_threads=8, variant=name)  # fmt: skip
    with trial_files("sample", "remote", search_data) as files:
        images, masks = files.files(cfg)
        m = measure_config(files, cfg, seconds=0.2, warmup_seconds=0.0)
    assert images == [variant_uri(BUCKET, "sample", name, Path(p).name)
                      for p in sorted(folder.glob("bench_?.tif"))]  # fmt: skip
    assert masks == [] and m.samples > 0
    after = _objects(client)
    assert after == before  # the same objects, byte for byte (ETags), none added
    assert not [k for k in after if k.startswith("search/")]
    assert {k.removeprefix(f"s3://{BUCKET}/") for k in images} <= set(before)
