"""An epoch that streams (ocog_lib/stream/windows.py, samplers.sample_slice): slices agree
with the whole epoch, batches and worker shares are the ones the engine always made, and
neither the first batch nor the plan's memory grows with the epoch's length."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from ocog_lib.cog.grid import TileGrid
from ocog_lib.stream.config import StreamConfig
from ocog_lib.stream.dataset import CogStream
from ocog_lib.stream.samplers import SLICE, SamplerConfig, sample_windows
from ocog_lib.stream.windows import Batches, EpochWindows, GivenWindows, WorkerShare
from tests.support.rasters import real_pixels, write_raster

GRIDS = [TileGrid(1000, 1400, 256, 256), TileGrid(700, 500, 128, 128)]


@pytest.mark.parametrize("kind, reuse, length", [
    ("random", 1, 3 * SLICE + 17), ("block", 1, SLICE + 5), ("random", 4, 2 * SLICE + 3),
    ("block", 8, SLICE + 9), ("grid", 1, 0),
])  # fmt: skip
def test_any_range_of_the_epoch_is_the_same_windows(kind, reuse, length):
    cfg = SamplerConfig(kind, 64 if kind == "grid" else 96, length, 3, patches_per_tile=reuse)
    whole = sample_windows(GRIDS, cfg)
    epoch = EpochWindows(GRIDS, cfg)
    assert len(epoch) == len(whole) and whole.dtype == np.int64
    rng = np.random.default_rng(0)
    for start in [0, SLICE - 3, len(whole) - 5, *rng.integers(0, len(whole), 5).tolist()]:
        stop = start + int(rng.integers(1, 2 * SLICE))
        assert np.array_equal(epoch.take(start, stop), whole[start:stop])
    assert np.array_equal(EpochWindows(GRIDS, cfg).take(0, len(whole)), whole)  # same seed


def test_grid_windows_cover_every_raster_in_raster_order():
    cfg = SamplerConfig("grid", 200)
    got = sample_windows(GRIDS, cfg)
    want = []
    for f, g in enumerate(GRIDS):
        ys = sorted({min(y, g.height - 200) for y in range(0, g.height, 200)})
        xs = sorted({min(x, g.width - 200) for x in range(0, g.width, 200)})
        want += [(f, y, x) for y in ys for x in xs]
    assert got.tolist() == [list(w) for w in want]


@pytest.mark.parametrize("n, size, drop", [(100, 8, False), (100, 8, True), (96, 8, True)])
def test_batches_are_the_epoch_cut_in_order(n, size, drop):
    arr = np.arange(3 * n, dtype=np.int64).reshape(n, 3)
    batches = Batches(GivenWindows(arr), size, drop)
    want = [arr[i : i + size] for i in range(0, n, size)]
    if drop and len(want[-1]) < size:
        want.pop()
    assert len(batches) == len(want) and len(batches[-2:]) == 2
    assert all(np.array_equal(a, b) for a, b in zip(batches, want, strict=True))


@pytest.mark.parametrize("n, workers, group", [(10, 3, 1), (37, 4, 3), (5, 8, 2), (24, 2, 6)])
def test_a_worker_share_is_whole_groups_dealt_round_robin(n, workers, group):
    batches = list(range(n))
    shares = [list(WorkerShare(batches, w, workers, group)) for w in range(workers)]
    for w, share in enumerate(shares):
        assert share == [i for i in batches if (i // group) % workers == w]
    assert sorted(sum(shares, [])) == batches


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("epoch") / "a.tif"
    write_raster(path, real_pixels(4, 512, 512, "uint16"), BLOCKSIZE=128, COMPRESS="ZSTD")
    return str(path)


def test_an_epoch_of_a_billion_windows_starts_in_bounded_memory(scene):
    cfg = StreamConfig(patch_size=64, batch_size=16, length=10**9, threads=2, prefetch=2)
    tracemalloc.start()
    try:
        stream = CogStream([scene], None, cfg)
        it = iter(stream.loader())
        first = next(it)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(stream) == 10**9 // 16
    assert peak < 64 * 2**20, peak  # the goal: <= 100 MB of plan at any length
    with rasterio.open(scene) as ds:  # and the patches are still rasterio's
        for (f, row, col), patch in zip(first["window"].tolist(), first["image"], strict=True):
            want = ds.read(window=Window(col, row, 64, 64))
            assert f == 0 and np.array_equal(patch.numpy(), want)
    it.close()
    stream.close()


def test_the_plan_holds_only_its_look_ahead_and_hits_as_the_whole_plan(scene):
    base = StreamConfig(patch_size=96, batch_size=8, length=2400, patches_per_tile=4,
                        cache_mb=1.0, threads=2, prefetch=2, plan_ahead=16)  # fmt: skip
    stream = CogStream([scene], None, base)
    sizes = []
    for i, _ in enumerate(stream.iter_batches()):
        if i % 50 == 10:
            sizes.append(len(stream.engine().cache._uses))
    bounded = stream.stats.cache_hit_rate
    stream.close()
    keys_per_batch = 8 * 4  # at most 4 tiles a 96-px window
    assert max(sizes) <= (16 + 2 + 1) * keys_per_batch
    whole = CogStream([scene], None, StreamConfig(**{**base.__dict__, "plan_ahead": 10**6}))
    for _ in whole.iter_batches():
        pass
    assert abs(bounded - whole.stats.cache_hit_rate) <= 0.02, (bounded, whole.stats)
    whole.close()
