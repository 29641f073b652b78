"""Every patch the engine delivers equals rasterio's windowed read of the same window."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rasterio.windows import Window

from ocog_lib.errors import InputError
from ocog_lib.stream.config import StreamConfig
from ocog_lib.stream.dataset import CogStream, make_stream
from tests.support.rasters import real_pixels, write_raster

# name: (dtype, bands, height, width, driver, creation options)
LAYOUTS = {
    "none": ("uint16", 4, 300, 420, "COG", dict(compress="NONE", blocksize=128)),
    "deflate": ("uint16", 4, 300, 420, "COG", dict(compress="DEFLATE", level=6, blocksize=128)),
    "deflate-p2": (
        "uint16",
        4,
        300,
        420,
        "COG",
        dict(compress="DEFLATE", predictor=2, blocksize=64),
    ),
    "zstd-p2-int16": (
        "int16",
        3,
        260,
        300,
        "COG",
        dict(compress="ZSTD", predictor=2, blocksize=128),
    ),
    "zstd-p3-float32": (
        "float32",
        2,
        260,
        300,
        "COG",
        dict(compress="ZSTD", predictor=3, blocksize=128),
    ),
    "lzw-p2-uint8": ("uint8", 1, 200, 333, "COG", dict(compress="LZW", predictor=2, blocksize=64)),
    "lerc-zstd": (
        "uint16",
        4,
        300,
        300,
        "COG",
        dict(compress="LERC_ZSTD", max_z_error=0, blocksize=128),
    ),
    "lerc-deflate": (
        "uint16",
        2,
        300,
        300,
        "COG",
        dict(compress="LERC_DEFLATE", max_z_error=0, blocksize=128),
    ),
    "13-bands-zstd": ("uint16", 13, 200, 260, "COG", dict(compress="ZSTD", blocksize=128)),
    "band-interleave-p2": (
        "uint16",
        4,
        300,
        300,
        "GTiff",
        dict(
            tiled=True,
            blockxsize=128,
            blockysize=128,
            compress="DEFLATE",
            predictor=2,
            interleave="band",
        ),
    ),
    "band-interleave-float-p3": (
        "float32",
        3,
        200,
        200,
        "GTiff",
        dict(
            tiled=True,
            blockxsize=64,
            blockysize=64,
            compress="ZSTD",
            predictor=3,
            interleave="band",
        ),
    ),
    "packbits-uint8": (
        "uint8",
        3,
        200,
        200,
        "GTiff",
        dict(tiled=True, blockxsize=64, blockysize=64, compress="PACKBITS"),
    ),
    "bigtiff-big-endian": (
        "uint16",
        4,
        260,
        260,
        "GTiff",
        dict(
            tiled=True,
            blockxsize=128,
            blockysize=128,
            compress="DEFLATE",
            predictor=2,
            BIGTIFF="YES",
            ENDIANNESS="BIG",
        ),
    ),
    "none-band-interleave": (
        "uint16",
        3,
        260,
        300,
        "GTiff",
        dict(tiled=True, blockxsize=64, blockysize=64, interleave="band"),
    ),
    # layouts the fast path hands to GDAL: never wrong pixels
    "striped": ("uint16", 4, 200, 230, "GTiff", dict(compress="DEFLATE")),
    "jpeg-ycbcr": (
        "uint8",
        3,
        256,
        256,
        "GTiff",
        dict(tiled=True, blockxsize=128, blockysize=128, compress="JPEG", photometric="YCBCR"),
    ),
    "webp": ("uint8", 3, 256, 256, "COG", dict(compress="WEBP", quality=80, blocksize=128)),
}
FALLBACK = {"striped", "jpeg-ycbcr", "webp"}


@pytest.fixture(scope="module")
def layout_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("layouts")
    files = {}
    for i, (name, (dtype, bands, h, w, driver, opts)) in enumerate(LAYOUTS.items()):
        files[name] = write_raster(
            root / f"{name}.tif", real_pixels(bands, h, w, dtype, seed=i), driver=driver, **opts
        )
    return files


def assert_batches_match(stream, paths, mask_paths=None, bands=None):
    seen = 0
    handles = [rasterio.open(p) for p in paths]
    masks = [rasterio.open(p) for p in mask_paths] if mask_paths else None
    p = stream.cfg.patch_size
    try:
        for batch in stream.loader():
            for b, (fid, row, col) in enumerate(batch["window"].tolist()):
                idx = [i + 1 for i in bands] if bands else None
                ref = handles[fid].read(idx, window=Window(col, row, p, p))
                got = batch["image"][b].numpy()
                assert got.dtype == ref.dtype
                np.testing.assert_array_equal(got, ref, err_msg=f"{paths[fid]} window {row},{col}")
                if masks:
                    ref_m = masks[fid].read(1, window=Window(col, row, p, p))
                    np.testing.assert_array_equal(batch["mask"][b].numpy(), ref_m)
                seen += 1
    finally:
        for h in handles + (masks or []):
            h.close()
    return seen


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_every_layout_matches_rasterio(layout_files, name):
    path = layout_files[name]
    for sampler in ("random", "block", "grid"):
        stream = make_stream(
            [path], sampler=sampler, patch_size=100, batch_size=8, length=24, seed=7, threads=2
        )
        assert stream.rasters[0].fast == (name not in FALLBACK)
        n = assert_batches_match(stream, [path])
        assert n == len(stream.windows) and n > 0
        stream.close()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.sampled_from(sorted(set(LAYOUTS) - FALLBACK)),
    sampler=st.sampled_from(["random", "block", "grid"]),
    patch=st.integers(min_value=1, max_value=200),
    seed=st.integers(min_value=0, max_value=2**16),
    reuse=st.sampled_from([1, 1, 3]),
    data=st.data(),
)
def test_random_windows_match_rasterio(layout_files, name, sampler, patch, seed, reuse, data):
    dtype, bands, h, w, _, _ = LAYOUTS[name]
    patch = min(patch, h, w)
    subset = data.draw(st.lists(st.integers(0, bands - 1), min_size=1, max_size=bands, unique=True))
    out_dtype = data.draw(st.sampled_from([None, "float32"]))
    stream = make_stream(
        [layout_files[name]],
        sampler=sampler,
        patch_size=patch,
        batch_size=5,
        length=12,
        seed=seed,
        patches_per_tile=reuse,
        bands=tuple(subset),
        dtype=out_dtype,
        cache_mb=data.draw(st.sampled_from([0, 1, 64])),
    )
    with rasterio.open(layout_files[name]) as ds:
        for batch in stream:
            for b, (_, row, col) in enumerate(batch["window"].tolist()):
                ref = ds.read([i + 1 for i in subset], window=Window(col, row, patch, patch))
                if out_dtype:
                    ref = ref.astype(out_dtype)
                np.testing.assert_array_equal(batch["image"][b].numpy(), ref)
    stream.close()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Two images with label masks (uint8) on the same grid."""
    root = tmp_path_factory.mktemp("pairs")
    images, masks = [], []
    for i in range(2):
        arr = real_pixels(4, 300, 300, "uint16", seed=10 + i)
        images.append(write_raster(root / f"img{i}.tif", arr, compress="DEFLATE", blocksize=128))
        labels = (arr[3] > arr[2]).astype(np.uint8) + 2 * (arr[0] > 900).astype(np.uint8)
        masks.append(
            write_raster(root / f"mask{i}.tif", labels[None], compress="DEFLATE", blocksize=128)
        )
    return images, masks


@pytest.mark.parametrize(
    "compress,predictor,reuse", [("NONE", 1, 1), ("DEFLATE", 1, 1), ("ZSTD", 2, 1), ("ZSTD", 2, 4)]
)
def test_sparse_tiles_read_as_nodata(tmp_path, compress, predictor, reuse):
    arr = real_pixels(2, 256, 256, "uint16")
    arr[:, :128, :128] = 7  # whole nodata tiles: GDAL leaves them out with SPARSE_OK
    path = write_raster(
        tmp_path / "sparse.tif",
        arr,
        driver="GTiff",
        tiled=True,
        blockxsize=64,
        blockysize=64,
        compress=compress,
        predictor=predictor,
        sparse_ok=True,
        nodata=7,
    )
    # reuse 1 copies from stored-layout tiles, reuse 4 from band-first ones
    stream = make_stream(
        [path], sampler="grid", patch_size=96, batch_size=4, patches_per_tile=reuse
    )
    assert (stream.rasters[0].index.levels[0].byte_counts == 0).any()
    assert assert_batches_match(stream, [path]) == len(stream.windows)


def test_uncompressed_direct_and_cached_paths_agree(layout_files):
    path = layout_files["none"]
    kw = dict(sampler="random", patch_size=77, batch_size=8, length=32, seed=4)
    direct = list(make_stream([path], direct=True, **kw))
    cached = make_stream([path], direct=False, **kw)
    for a, b in zip(direct, cached, strict=True):
        assert torch.equal(a["image"], b["image"])
    assert cached.stats.tiles_decoded > 0


def test_image_mask_pairs(pair):
    images, masks = pair
    stream = make_stream(
        images, masks, sampler="random", patch_size=96, batch_size=6, length=30, seed=2
    )
    assert assert_batches_match(stream, images, masks) == 30
    assert stream.batch_windows()[0].shape == (6, 3)


@pytest.mark.parametrize("workers,method", [(0, None), (1, "fork"), (2, "fork"), (2, "spawn")])
def test_workers_deliver_the_same_pixels(pair, workers, method):
    images, masks = pair
    stream = make_stream(
        images,
        masks,
        sampler="block",
        patch_size=64,
        batch_size=4,
        length=40,
        seed=5,
        workers=workers,
        start_method=method,
        patches_per_tile=2,
        shuffle_tiles=2,
    )
    windows = []
    for batch in stream.loader():
        windows.extend(map(tuple, batch["window"].tolist()))
    assert sorted(windows) == sorted(map(tuple, stream.windows.tolist()))
    assert assert_batches_match(stream, images, masks) == 40


def test_same_seed_same_batches_other_seed_other_windows(pair):
    images, _ = pair
    a = [
        b["image"].clone()
        for b in make_stream(
            images, sampler="random", patch_size=64, length=16, batch_size=8, seed=1
        )
    ]
    b = [
        b["image"].clone()
        for b in make_stream(
            images, sampler="random", patch_size=64, length=16, batch_size=8, seed=1
        )
    ]
    c = make_stream(images, sampler="random", patch_size=64, length=16, batch_size=8, seed=2)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(
        c.windows, make_stream(images, length=16, seed=1, patch_size=64).windows
    )


def test_cache_is_bounded_and_reuse_hits(pair):
    images, _ = pair
    stream = make_stream(
        images,
        sampler="block",
        patch_size=64,
        batch_size=16,
        length=160,
        seed=0,
        patches_per_tile=8,
        shuffle_tiles=4,
        cache_mb=0.5,
    )
    for _ in stream:
        pass
    eng = stream.engine()
    assert eng.cache.nbytes <= 0.5 * 1024 * 1024
    # Eight windows per tile, four tiles per batch of 16: each tile is needed by two
    # batches, so at least half of the per-batch tile references must be cache hits.
    assert stream.stats.cache_hit_rate >= 0.5
    assert stream.stats.samples / stream.stats.tiles_decoded >= 4
    assert 0 < stream.batch_mix() <= 1


def test_corrupt_tile_raises_naming_the_file(tmp_path):
    arr = real_pixels(4, 256, 256, "uint16")
    path = write_raster(tmp_path / "corrupt.tif", arr, compress="DEFLATE", blocksize=128)
    stream = make_stream([path], sampler="grid", patch_size=128, batch_size=4)
    off, n = stream.rasters[0].index.tile_entry(0, 0, 0, 0)
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(b"\xff" * n)
    with pytest.raises(InputError, match="corrupt.tif"):
        list(stream)


@pytest.mark.parametrize(
    "content,cause", [(b"hello, not a tiff at all", "not a TIFF"), (None, "truncated")]
)
def test_bad_files_are_named(tmp_path, content, cause):
    path = tmp_path / "bad.tif"
    if content is None:
        good = write_raster(
            tmp_path / "good.tif",
            real_pixels(4, 256, 256, "uint16"),
            compress="DEFLATE",
            blocksize=128,
        )
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(InputError, match="bad.tif"):
        make_stream([path])


def test_missing_file_and_mismatched_mask_are_named(tmp_path, pair):
    images, masks = pair
    with pytest.raises(InputError, match="nowhere.tif"):
        make_stream([tmp_path / "nowhere.tif"])
    small = write_raster(tmp_path / "small_mask.tif", np.zeros((1, 128, 128), np.uint8))
    with pytest.raises(InputError, match="small_mask.tif"):
        make_stream(images[:1], [small])


def test_a_shuffle_group_is_capped_at_what_the_cache_holds(tmp_path):
    arr = real_pixels(4, 256, 256, "uint16", seed=4)
    path = write_raster(tmp_path / "g.tif", arr, compress="DEFLATE", blocksize=64)
    tile = 64 * 64 * 4 * 2  # decoded bytes of one tile
    # random windows of 32 px anchored in a 64 px tile reach 2x2 tiles per visit
    cache_mb = 10 * 4 * tile / 2**20
    s = make_stream([str(path)], sampler="random", patch_size=32, patches_per_tile=4,
                    shuffle_tiles=32, cache_mb=cache_mb, length=64)  # fmt: skip
    assert (s.cfg.patches_per_tile, s.cfg.shuffle_tiles) == (4, 10)
    # a mask's tiles (1 band uint8: 4 KB each) count too: 4 x 36 KB a visit -> 8 visits
    labels = (arr[3] > arr[2]).astype(np.uint8)[None]
    mpath = write_raster(tmp_path / "m.tif", labels, compress="DEFLATE", blocksize=64)
    with_mask = make_stream(
        [str(path)], [str(mpath)], sampler="random", patch_size=32, patches_per_tile=4,
        shuffle_tiles=32, cache_mb=cache_mb, length=8,
    )  # fmt: skip
    assert with_mask.cfg.shuffle_tiles == 8
    plain = make_stream([str(path)], sampler="random", patch_size=32, shuffle_tiles=32, length=8)
    assert (plain.cfg.patches_per_tile, plain.cfg.shuffle_tiles) == (1, 32)  # local: no reuse
    with rasterio.open(path) as ds:  # and the capped stream's pixels are still right
        for batch in s:
            for b, (_, row, col) in enumerate(batch["window"].tolist()):
                want = ds.read(window=Window(col, row, 32, 32))
                np.testing.assert_array_equal(batch["image"][b].numpy(), want)


def test_given_windows_are_read_exactly_in_order(pair):
    images, masks = pair
    windows = np.array([[1, 236, 0], [0, 0, 0], [0, 17, 203], [1, 5, 5], [0, 17, 203]])
    cfg = StreamConfig(sampler="block", patch_size=64, batch_size=2, length=999, seed=3)
    stream = CogStream(images, masks, cfg, windows=windows)
    np.testing.assert_array_equal(stream.windows, windows)  # no sampler drew them
    got = [tuple(w) for b in stream.loader() for w in b["window"].tolist()]
    assert got == [tuple(w) for w in windows.tolist()]
    assert assert_batches_match(stream, images, masks) == 5
    # the loader takes an epoch's windows over the same rasters, on the same engine: decoded
    # tiles carry over from one epoch to the next
    decoded, batches = stream.stats.tiles_decoded, stream.stats.batches
    again = [tuple(w) for b in stream.loader(windows[::-1]) for w in b["window"].tolist()]
    assert again == [tuple(w) for w in windows[::-1].tolist()]
    assert stream.stats.batches == batches + 3 and stream.stats.tiles_decoded == decoded > 0
    empty = CogStream(images, masks, cfg, windows=np.empty((0, 3), dtype=np.int64))
    assert len(empty) == 0 and list(empty.loader()) == []


@pytest.mark.parametrize("windows,match", [
    ([[0, 237, 0]], r"window \(0, 237, 0\).*64-px patch inside one of the 2 images"),
    ([[2, 0, 0]], r"window \(2, 0, 0\)"),
    ([[0, -1, 0]], r"window \(0, -1, 0\)"),
    ([[0, 0, 0, 0]], "shape"),
    ([[0.0, 0.0, 0.0]], "integers"),
])  # fmt: skip
def test_given_windows_outside_the_images_are_refused(pair, windows, match):
    images, _ = pair
    cfg = StreamConfig(patch_size=64)
    with pytest.raises(InputError, match=match):
        CogStream(images, None, cfg, windows=np.array(windows))
    with pytest.raises(InputError, match=match):
        CogStream(images, None, cfg, windows=np.zeros((0, 3), dtype=np.int64)).loader(
            np.array(windows))
