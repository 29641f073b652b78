"""The engine over s3:// against a real server on 127.0.0.1: same pixels, faults handled."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from ocog_lib.errors import InputError
from ocog_lib.stream.dataset import make_stream
from tests.support.faults import FaultFront
from tests.support.rasters import real_pixels, write_raster
from tests.support.s3 import BUCKET


@pytest.fixture(scope="module")
def pair(s3, tmp_path_factory):
    root = tmp_path_factory.mktemp("stream_remote")
    arr = real_pixels(4, 600, 500, "uint16", seed=3)
    img = write_raster(root / "img.tif", arr, compress="ZSTD", predictor=2, blocksize=128)
    msk = write_raster(
        root / "msk.tif",
        (arr[3] > arr[2]).astype(np.uint8)[None],
        compress="DEFLATE",
        blocksize=128,
    )
    client = s3.client()
    for p in (img, msk):
        client.upload_file(str(p), BUCKET, f"stream/{p.name}")
    return img, msk, f"s3://{BUCKET}/stream/img.tif", f"s3://{BUCKET}/stream/msk.tif"


def _check(stream, img, msk):
    n = 0
    p = stream.cfg.patch_size
    with rasterio.open(img) as di, rasterio.open(msk) as dm:
        for batch in stream.loader():
            for b, (_, row, col) in enumerate(batch["window"].tolist()):
                w = Window(col, row, p, p)
                np.testing.assert_array_equal(batch["image"][b].numpy(), di.read(window=w))
                np.testing.assert_array_equal(batch["mask"][b].numpy(), dm.read(1, window=w))
                n += 1
    return n


@pytest.mark.parametrize("workers", [0, 2])
def test_s3_patches_equal_the_local_file(s3_env, pair, workers):
    img, msk, img_uri, msk_uri = pair
    stream = make_stream(
        [img_uri],
        [msk_uri],
        sampler="random",
        patch_size=100,
        batch_size=8,
        length=48,
        seed=1,
        workers=workers,
    )
    assert stream.rasters[0].remote and stream.cfg.io_threads_for(stream.rasters) > 0
    assert _check(stream, img, msk) == 48
    if workers == 0:  # only the tiles the windows need crossed the wire
        sent = stream.rasters[0].source.stats()
        assert 0 < sent.bytes < img.stat().st_size * 2


def test_remote_sources_reuse_tiles_by_default_and_local_ones_do_not(s3_env, pair):
    from ocog_lib.stream.samplers import link_reuse

    img, msk, img_uri, msk_uri = pair
    remote = make_stream(
        [img_uri], [msk_uri], sampler="random", patch_size=100, batch_size=8, length=64
    )
    local = make_stream([str(img)], sampler="random", patch_size=100, batch_size=8, length=64)
    assert remote.cfg.patches_per_tile == link_reuse("random", 100, 128, 128) > 1
    assert local.cfg.patches_per_tile == 1
    # told otherwise, the engine does as told; and the auto stream's pixels are right
    plain = make_stream([img_uri], sampler="random", patch_size=100, length=8, patches_per_tile=1)
    assert plain.cfg.patches_per_tile == 1
    assert _check(remote, img, msk) == 64
    sent = remote.rasters[0].source.stats()
    assert sent.bytes < 64 * 100 * 100 * 4 * 2  # fewer bytes than the decoded patches


def test_5xx_are_retried_and_pixels_stay_right(s3, s3_env, pair, monkeypatch):
    img, msk, img_uri, msk_uri = pair
    front = FaultFront(s3.endpoint_url, statuses=(503, 500, 503), match="GET").start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", front.url)
        stream = make_stream(
            [img_uri], [msk_uri], sampler="block", patch_size=64, batch_size=4, length=16, seed=2
        )
        assert _check(stream, img, msk) == 16
        assert front.faulted == 3
    finally:
        front.stop()


def test_deleted_object_fails_naming_it_or_is_skipped(s3, s3_env, pair, tmp_path):
    img, _, _, _ = pair
    client = s3.client()
    client.upload_file(str(img), BUCKET, "stream/doomed.tif")
    uri = f"s3://{BUCKET}/stream/doomed.tif"
    strict = make_stream([uri], sampler="random", patch_size=64, batch_size=4, length=8)
    lenient = make_stream(
        [uri], sampler="random", patch_size=64, batch_size=4, length=8, on_error="skip"
    )
    client.delete_object(Bucket=BUCKET, Key="stream/doomed.tif")
    with pytest.raises(InputError, match="doomed.tif"):
        list(strict)
    batches = list(lenient)
    assert lenient.stats.skipped == 8 and all(len(b["image"]) == 0 for b in batches)
    with pytest.raises(InputError, match="on_error"):
        make_stream([img], on_error="ignore")
