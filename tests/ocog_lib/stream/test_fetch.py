"""TileFetcher: a bad tile fails alone, and no error leaves a thread waiting forever.

The hang scenarios run in a subprocess with a timeout: on a hang the test fails (and
the stuck interpreter is killed) instead of stalling the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

import ocog_lib
from ocog_lib.errors import InputError
from ocog_lib.storage import ByteSource
from ocog_lib.stream.cache import TileCache
from ocog_lib.stream.config import StreamConfig
from ocog_lib.stream.dataset import CogStream, make_stream
from ocog_lib.stream.fetch import TileFetcher
from ocog_lib.stream.rasters import open_raster
from tests.support.rasters import real_pixels, write_raster

BAD = (1, 2)  # the corrupt tile (row, col) of a 4 x 4 grid of 64-px tiles


def _corrupt(path: Path, ty: int, tx: int) -> None:
    off, n = open_raster(str(path)).index.tile_entry(0, 0, ty, tx)
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(b"\xff" * n)


@pytest.fixture()
def pair(tmp_path):
    """A 256 x 256 image and mask in 64-px DEFLATE tiles, stored back to back (so a batch's
    tiles of one file are one merged read; the COG driver leaves gaps between tiles)."""
    arr = real_pixels(4, 256, 256, "uint16", seed=6)
    labels = (arr[3] > arr[2]).astype(np.uint8)[None]
    opts = dict(driver="GTiff", tiled=True, blockxsize=64, blockysize=64, compress="DEFLATE")
    img = write_raster(tmp_path / "img.tif", arr, **opts)
    msk = write_raster(tmp_path / "msk.tif", labels, **opts)
    return img, msk


def _delivered(stream: CogStream, img: Path, msk: Path | None = None) -> list[tuple]:
    """The windows the stream delivers, each checked against rasterio's windowed read
    (GDAL reads every tile but the corrupt one, which these windows do not touch)."""
    p = stream.cfg.patch_size
    got = []
    with rasterio.open(img) as di, rasterio.open(msk or img) as dm:
        for batch in stream:
            for b, (f, row, col) in enumerate(batch["window"].tolist()):
                got.append((f, row, col))
                w = Window(col, row, p, p)
                np.testing.assert_array_equal(batch["image"][b].numpy(), di.read(window=w))
                if msk is not None:
                    np.testing.assert_array_equal(batch["mask"][b].numpy(), dm.read(1, window=w))
    stream.close()
    return got


def _needs(stream: CogStream, row: int, col: int, tile: tuple[int, int]) -> bool:
    parts = stream.rasters[0].window_tiles(row, col, stream.cfg.patch_size)
    return tile in {(ty, tx) for ty, tx, _, _ in parts}


@pytest.mark.parametrize("reuse", [1, 4])
@pytest.mark.parametrize("sampler,patch,length", [("grid", 64, 16), ("random", 40, 48)])
@pytest.mark.parametrize("bad_file", ["image", "mask"])
def test_skip_leaves_out_only_the_samples_that_need_a_bad_tile(
    pair, bad_file, sampler, patch, length, reuse
):
    img, msk = pair
    _corrupt(img if bad_file == "image" else msk, *BAD)
    stream = make_stream(
        [img], [msk], sampler=sampler, patch_size=patch, batch_size=8, length=length,
        seed=3, threads=2, on_error="skip", patches_per_tile=reuse, cache_mb=0,
    )  # fmt: skip
    want = [tuple(w) for w in stream.windows.tolist() if not _needs(stream, w[1], w[2], BAD)]
    assert 0 < len(want) < len(stream.windows)
    assert _delivered(stream, img, msk) == want
    assert stream.stats.skipped == len(stream.windows) - len(want)
    assert stream.stats.samples == len(want)


def test_good_tiles_of_a_merged_job_land_when_one_fails(pair):
    img, _ = pair
    _corrupt(img, 0, 2)
    cache = TileCache(64 << 20)
    fetcher = TileFetcher([open_raster(str(img))], cache, threads=1)
    keys = [(0, 0, 0, tx) for tx in range(4)]  # one row of tiles: one merged read
    found, fresh = fetcher.request(keys)
    assert fresh == 4 and len({id(v) for v in found.values()}) == 1
    with rasterio.open(img) as ds:
        for k in keys:
            if k[3] == 2:
                with pytest.raises(InputError, match=r"img.tif: tile \(0, 2\)"):
                    fetcher.resolve(k, found[k])
                continue
            want = ds.read(window=Window(k[3] * 64, 0, 64, 64))
            np.testing.assert_array_equal(fetcher.resolve(k, found[k]), want)
            assert isinstance(cache.lookup(k), np.ndarray)
    assert cache.lookup((0, 0, 0, 2)) is None  # not left pending: a later batch retries it
    assert fetcher.tiles_decoded == 3
    fetcher.close()


def test_a_request_the_pools_refuse_leaves_nothing_claimed(pair):
    img, _ = pair
    cache = TileCache(64 << 20)
    fetcher = TileFetcher([open_raster(str(img))], cache, threads=1)
    fetcher.close()
    keys = [(0, 0, 0, tx) for tx in range(4)]
    with pytest.raises(RuntimeError):
        fetcher.request(keys)
    assert all(cache.lookup(k) is None for k in keys)  # free for a later request


def test_skip_covers_gdal_read_errors_naming_the_file(tmp_path):
    """A striped file goes through GDAL; a corrupt strip (rows 48-63) skips only the
    windows on it."""
    arr = real_pixels(2, 128, 96, "uint16", seed=2)
    path = write_raster(tmp_path / "striped.tif", arr, driver="GTiff", compress="DEFLATE",
                        blockysize=16)  # fmt: skip
    with rasterio.open(path) as ds:
        off = int(ds.get_tag_item("BLOCK_OFFSET_0_3", "TIFF", bidx=1))
        n = int(ds.get_tag_item("BLOCK_SIZE_0_3", "TIFF", bidx=1))
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(b"\xff" * n)
    kw = dict(sampler="grid", patch_size=32, batch_size=4, threads=1)
    with pytest.raises(InputError, match="striped.tif"):
        list(make_stream([path], **kw))
    stream = make_stream([path], on_error="skip", **kw)
    assert not stream.rasters[0].fast and stream.rasters[0].tile_height == 16
    want = [tuple(w) for w in stream.windows.tolist() if not (w[1] < 64 and w[1] + 32 > 48)]
    assert 0 < len(want) < len(stream.windows)
    assert _delivered(stream, path) == want
    assert stream.stats.skipped == len(stream.windows) - len(want)


class _FailingRange(ByteSource):
    """A source whose bytes [lo, hi) cannot be read: every read touching them fails."""

    def __init__(self, inner: ByteSource, lo: int, hi: int):
        self.inner, self.lo, self.hi, self.uri = inner, lo, hi, inner.uri
        self.reads: list[tuple[int, int]] = []

    def size(self) -> int:
        return self.inner.size()

    def read(self, offset: int, length: int) -> bytes:
        self.reads.append((offset, length))
        if offset < self.hi and offset + length > self.lo:
            raise OSError(f"I/O error at {offset}")
        return self.inner.read(offset, length)


@pytest.mark.parametrize("io_threads", [0, 4])  # decode pool reads / I/O threads read
def test_a_failed_merged_read_is_retried_tile_by_tile(pair, io_threads):
    img, _ = pair
    r = open_raster(str(img))
    off, n = r.index.tile_entry(0, 0, *BAD)
    flaky = replace(r, source=_FailingRange(r.source, off, off + n))
    cfg = StreamConfig(sampler="grid", patch_size=64, batch_size=16, on_error="skip",
                       patches_per_tile=1, io_threads=io_threads, threads=2)  # fmt: skip
    stream = CogStream([str(img)], None, cfg, rasters=[flaky])
    got = _delivered(stream, img)
    assert (0, 64, 128) not in got and len(got) == 15 and stream.stats.skipped == 1
    assert any(length > n for _, length in flaky.source.reads)  # a merged read was tried


# ---- no hang after an error ------------------------------------------------------------
# One interpreter runs the scenarios in turn (an interpreter start costs seconds). In each,
# a fault fires once for the mask's tile (1, 0), after the image's tiles of that batch were
# claimed (today's code): asking for its header entry (the path a mask tiled unlike its
# image took), or claiming it in the cache. Claimed tiles must never stay undecoded.
_PRELUDE = """
import sys, threading
import numpy as np
from ocog_lib.stream.cache import TileCache
from ocog_lib.stream.dataset import make_stream
from ocog_lib.cog.tiff_index import TiffIndex

img, msk = sys.argv[1], sys.argv[2]
real_entry, real_claim = TiffIndex.tile_entry, TileCache.claim
fired = threading.Event()
armed = {}

def fault(where):
    if armed.pop(where, False):
        fired.set()
        raise IndexError("injected fault")

def tile_entry(self, level, plane, ty, tx):
    if self.uri.endswith("msk.tif") and (ty, tx) == (1, 0):
        fault("entry")
    return real_entry(self, level, plane, ty, tx)

def claim(self, keys, fut, position=None):
    if (1, 0, 1, 0) in keys:  # file 1 is the mask
        fault("claim")
    return real_claim(self, keys, fut, position)

def arm(where):
    armed[where] = True
    fired.clear()

TiffIndex.tile_entry, TileCache.claim = tile_entry, claim
A = np.array([[0, 64, 0]])  # image tile (1, 0) and mask tile (1, 0): the fault
B = np.array([[0, 32, 0]])  # image and mask tiles (0, 0) and (1, 0): shares A's tiles
"""

_SCENARIOS = {
    # a later batch needs a tile the failed batch had claimed
    "later-batch": """
arm("entry")
s = make_stream([img], [msk], patch_size=64, batch_size=1, threads=2, prefetch=1)
try:
    list(s.iter_batches([A]))
except IndexError:
    pass
out = list(s.iter_batches([B, B]))
assert len(out) == 2 and tuple(out[0]["window"][0].tolist()) == (0, 32, 0)
s.close()
""",
    # batches prefetched behind the failed one wait on its tiles; then an iterator is
    # left mid-way (a break) and the stream closed: no engine thread may be left
    "prefetched": """
arm("claim")
s = make_stream([img], [msk], patch_size=64, batch_size=1, threads=2, prefetch=4)
make = s.make_batch
def make_batch(wins, position=None, tiles=None):
    if position:  # behind batch 0: ask for tiles once it has claimed its own
        fired.wait(10)
    return make(wins, position, tiles)
s.make_batch = make_batch
try:
    list(s.iter_batches([A, B, B, B, B, B]))
except IndexError:
    pass
for i, batch in enumerate(s.iter_batches([B] * 12)):
    if i == 2:
        break
s.close()
left = [t.name for t in threading.enumerate() if t.name.startswith("ocog-") and t.is_alive()]
assert not left, left
""",
    # DataLoader workers: the fault in a worker reaches the parent, which then closes
    "workers": """
arm("entry")
s = make_stream([img], [msk], sampler="random", patch_size=64, batch_size=1, length=32,
                threads=2, workers=2, start_method="fork")
try:
    for _ in s.loader():
        pass
    raise AssertionError("the fault was not raised")
except IndexError as exc:
    assert "injected fault" in str(exc)
s.close()
""",
}


def test_close_and_exit_are_prompt_after_an_error(pair):
    img, msk = pair
    code = _PRELUDE + "".join(
        f"{body}\nprint('done {name}', flush=True)\n" for name, body in _SCENARIOS.items()
    )
    root = Path(ocog_lib.__file__).resolve().parents[1]  # the package this test imports
    env = {**os.environ, "PYTHONPATH": str(root)}
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, str(img), str(msk)],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        pytest.fail(f"hung, killed after 60 s; finished before: {out.split()!r}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == [w for name in _SCENARIOS for w in ("done", name)]


def test_close_after_an_error_leaves_no_thread_behind(pair):
    """In this process: the same release, checked by the threads left running."""
    img, msk = pair
    _corrupt(msk, 0, 0)
    before = _engine_threads()
    stream = make_stream([img], [msk], sampler="grid", patch_size=64, batch_size=2, prefetch=3)
    with pytest.raises(InputError, match="msk.tif"):
        list(stream)
    assert _engine_threads() - before  # the engine ran threads
    closer = threading.Thread(target=stream.close, daemon=True)
    closer.start()
    closer.join(30)
    assert not closer.is_alive(), "close() blocked after an error"
    assert not _engine_threads() - before


def _engine_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("ocog-") and t.is_alive()}
