"""Batch buffers used again (ocog_lib/stream/buffers.py): a buffer returns only when
nothing refers to its batch, so a batch kept by its consumer is never overwritten."""

from __future__ import annotations

import gc

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from ocog_lib.stream.buffers import BatchBuffers
from ocog_lib.stream.config import StreamConfig
from ocog_lib.stream.dataset import CogStream
from tests.support.rasters import real_pixels, write_raster


def test_a_buffer_comes_back_only_when_its_last_reference_goes():
    pool = BatchBuffers(keep=2)
    a = pool.take((4, 8), np.float32)
    t = torch.from_numpy(a)[1:]  # a view of it keeps it
    del a
    gc.collect()
    b = pool.take((4, 8), np.float32)
    assert pool.reused == 0 and not np.shares_memory(b, t.numpy())
    del t
    gc.collect()
    c = pool.take((4, 8), np.float32)
    assert pool.reused == 1 and c.shape == (4, 8) and c.dtype == np.float32
    assert pool.take((4, 9), np.float32).shape == (4, 9)  # another shape: its own buffers


def test_kept_batches_stay_what_rasterio_reads(tmp_path):
    path = tmp_path / "a.tif"
    write_raster(path, real_pixels(4, 256, 256, "uint16"), BLOCKSIZE=64, COMPRESS="DEFLATE")
    cfg = StreamConfig(patch_size=64, batch_size=4, length=64, dtype="float32", threads=2,
                       prefetch=2)  # fmt: skip
    stream = CogStream([str(path)], None, cfg)
    kept = [b for i, b in enumerate(stream.loader()) if i % 2 == 0]  # others dropped: reused
    assert stream.engine().buffers.reused > 0
    with rasterio.open(path) as ds:
        for batch in kept:
            for (_, row, col), patch in zip(batch["window"].tolist(), batch["image"],
                                            strict=True):  # fmt: skip
                want = ds.read(window=Window(col, row, 64, 64)).astype(np.float32)
                assert np.array_equal(patch.numpy(), want)
    stream.close()
