"""Output dtype and per-band normalisation, done in the engine's one copy to the batch, are
bit for bit what numpy and torch make of rasterio's read of the same window."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window

from ocog_lib.errors import InputError
from ocog_lib.stream.config import StreamConfig
from ocog_lib.stream.dataset import make_stream
from ocog_lib.stream.normalize import Normalization
from tests.support.rasters import real_pixels, write_raster

NORM = Normalization.from_mean_std((1200.0, 1100.0, 1000.0, 2500.0), (610.0, 530.0, 707.0, 913.0))
TILED = dict(driver="GTiff", tiled=True, blockxsize=64, blockysize=64)
# name: (GDAL creation options, the copy path it takes)
LAYOUTS = {
    "zstd-p2": dict(**TILED, compress="ZSTD", predictor=2),  # pixel-interleaved, delta
    "deflate-planar-p2": dict(**TILED, compress="DEFLATE", predictor=2, interleave="band"),
    "none": dict(**TILED, compress="NONE"),  # direct, from the page cache
    "none-planar": dict(**TILED, compress="NONE", interleave="band"),  # direct, planar
    "striped": dict(driver="GTiff", compress="DEFLATE", blockysize=16),  # through GDAL
}
BITS = {
    torch.float64: torch.int64,
    torch.float32: torch.int32,
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("norm")
    out = {}
    for i, (name, opts) in enumerate(LAYOUTS.items()):
        arr = real_pixels(4, 128, 128, "uint16", seed=30 + i)
        out[name] = write_raster(root / f"{name}.tif", arr, **opts)
    labels = (arr[3] > arr[2]).astype(np.uint8)[None]
    out["mask"] = write_raster(root / "mask.tif", labels, **TILED, compress="DEFLATE")
    return out


def reference(raw: np.ndarray, norm: Normalization | None, dtype: str) -> torch.Tensor:
    """`raw` (bands, h, w) as the batch should hold it: float32 (float64 for float64)
    arithmetic, then torch's rounding to float16 / bfloat16."""
    compute = np.float64 if dtype == "float64" else np.float32
    x = raw.astype(compute)
    if norm is not None:
        x = x * np.array(norm.scale, compute)[:, None, None] + np.array(norm.offset, compute)[
            :, None, None
        ]
    return torch.from_numpy(x).to(getattr(torch, dtype))


def assert_bits_equal(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    assert got.dtype == want.dtype, what
    assert torch.equal(got.view(BITS[got.dtype]), want.view(BITS[want.dtype])), what


def check_stream(path, norm, dtype, bands=None, masks=None, **kw) -> int:
    """Every patch of a small random stream against rasterio + `reference`."""
    cfg = dict(sampler="random", patch_size=50, batch_size=4, length=8, seed=3, threads=2)
    stream = make_stream([path], [masks] if masks else None, bands=bands, dtype=dtype,
                         normalize=norm, **{**cfg, **kw})  # fmt: skip
    seen = 0
    idx = [b + 1 for b in bands] if bands else None
    with rasterio.open(path) as ds:
        for batch in stream.loader():
            for b, (_, row, col) in enumerate(batch["window"].tolist()):
                raw = ds.read(idx, window=Window(col, row, 50, 50))
                want = reference(raw, norm, dtype or "float32")
                assert_bits_equal(batch["image"][b], want, f"{path.name} {dtype} {row},{col}")
                seen += 1
            if kw.get("channels_last"):
                assert batch["image"].is_contiguous(memory_format=torch.channels_last)
            if masks:
                assert batch["mask"].dtype == torch.uint8
    stream.close()
    return seen


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64"])
@pytest.mark.parametrize("name", list(LAYOUTS))
def test_normalised_batches_are_bit_exact(files, name, dtype):
    path = files[name]
    r = make_stream([path], patch_size=50).rasters[0]  # the copy path this layout takes
    assert (r.fast, r.fast and r.direct) == (name != "striped", name.startswith("none"))
    assert not r.fast or (r.index.planar == 2) == ("planar" in name)
    assert check_stream(path, NORM, dtype) == 8
    picked = Normalization.from_scale_offset((0.25, -1e-3), (3.0, 0.5))
    assert check_stream(path, picked, dtype, bands=(3, 1)) == 8


@pytest.mark.parametrize("name,extra", [
    ("zstd-p2", dict(patches_per_tile=3)),  # band-first tiles, not delta pieces
    ("none", dict(direct=False)),  # uncompressed, through the cache
])  # fmt: skip
def test_other_copy_paths_are_bit_exact(files, name, extra):
    for dtype in ("float32", "bfloat16"):
        assert check_stream(files[name], NORM, dtype, **extra) == 8


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_channels_last_batches_are_bit_exact(files, name):
    """The same values in (N, H, W, C) memory on every copy path (pixel rows, planar
    bands, GDAL; cast, normalised, rounded, selected bands), and the source dtype as read."""
    picked = Normalization.from_scale_offset((0.25, -1e-3), (3.0, 0.5))
    for norm, dtype, bands in ((None, "float32", None), (NORM, "bfloat16", None),
                               (NORM, "float16", None), (picked, "float32", (3, 1))):  # fmt: skip
        assert check_stream(files[name], norm, dtype, bands=bands, channels_last=True) == 8
    stream = make_stream([files[name]], sampler="random", patch_size=50, batch_size=4,
                         length=8, seed=3, channels_last=True)  # fmt: skip
    with rasterio.open(files[name]) as ds:
        for batch in stream:
            image = batch["image"]
            assert image.dtype == torch.uint16 and image.shape[1:] == (4, 50, 50)
            assert image.is_contiguous(memory_format=torch.channels_last)
            for b, (_, row, col) in enumerate(batch["window"].tolist()):
                want = ds.read(window=Window(col, row, 50, 50))
                np.testing.assert_array_equal(image[b].numpy(), want)


def test_channels_last_on_band_first_tiles_workers_and_skips(files, tmp_path):
    assert check_stream(files["zstd-p2"], NORM, "float32", channels_last=True,
                        patches_per_tile=3) == 8  # fmt: skip
    kw = dict(sampler="random", patch_size=40, batch_size=4, length=8, seed=1,
              dtype="bfloat16", normalize=NORM)  # fmt: skip
    here = [b["image"] for b in make_stream([files["none"]], **kw).loader()]
    there = make_stream([files["none"]], workers=1, start_method="fork", channels_last=True,
                        **kw).loader()  # fmt: skip
    for a, b in zip(here, there, strict=True):
        assert b["image"].is_contiguous(memory_format=torch.channels_last)
        assert_bits_equal(b["image"], a, "worker, channels_last")
    arr = real_pixels(4, 128, 128, "uint16", seed=6)
    path = write_raster(tmp_path / "corrupt.tif", arr, **TILED, compress="DEFLATE")
    off, n = make_stream([path], patch_size=64).rasters[0].index.tile_entry(0, 0, 0, 0)
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(b"\xff" * n)
    stream = make_stream([path], sampler="grid", patch_size=64, batch_size=4,
                         on_error="skip", channels_last=True)  # fmt: skip
    (batch,) = list(stream)
    assert stream.stats.skipped == 1 and len(batch["image"]) == 3
    assert batch["image"].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("dtype", [None, "float32", "float16", "bfloat16"])
def test_cast_only_and_default_dtype(files, dtype):
    """No normalisation: a plain cast; normalisation with no dtype: float32."""
    for name in ("zstd-p2", "none"):
        assert check_stream(files[name], None, dtype or "float32") == 8
        if dtype is None:
            assert check_stream(files[name], NORM, None) == 8


def test_masks_are_neither_cast_nor_normalised(files):
    path, mask = files["zstd-p2"], files["mask"]
    assert check_stream(path, NORM, "bfloat16", masks=mask) == 8
    stream = make_stream([path], [mask], sampler="grid", patch_size=64, batch_size=4,
                         dtype="float32", normalize=NORM)  # fmt: skip
    with rasterio.open(mask) as ds:
        for batch in stream:
            for b, (_, row, col) in enumerate(batch["window"].tolist()):
                ref = ds.read(1, window=Window(col, row, 64, 64))
                np.testing.assert_array_equal(batch["mask"][b].numpy(), ref)


@pytest.mark.parametrize("compress", ["NONE", "DEFLATE"])  # direct fill / decoded fill
def test_sparse_tiles_become_the_normalised_nodata(tmp_path, compress):
    arr = real_pixels(4, 128, 128, "uint16", seed=5)
    arr[:, :64, :64] = 7  # a whole nodata tile: left out with SPARSE_OK
    path = write_raster(tmp_path / "sparse.tif", arr, **TILED, compress=compress,
                        sparse_ok=True, nodata=7)  # fmt: skip
    stream = make_stream([path], sampler="grid", patch_size=50)  # (0, 0) is all nodata
    assert (stream.rasters[0].index.levels[0].byte_counts == 0).any()
    for dtype in ("float32", "bfloat16", "float64"):
        assert check_stream(path, NORM, dtype, sampler="grid") == len(stream.windows)


def test_skipped_samples_leave_the_rest_exact(tmp_path):
    arr = real_pixels(4, 128, 128, "uint16", seed=6)
    path = write_raster(tmp_path / "corrupt.tif", arr, **TILED, compress="DEFLATE")
    off, n = make_stream([path], patch_size=64).rasters[0].index.tile_entry(0, 0, 0, 0)
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(b"\xff" * n)
    stream = make_stream([path], sampler="grid", patch_size=64, batch_size=4,
                         on_error="skip", dtype="float16", normalize=NORM)  # fmt: skip
    batches = list(stream)
    assert stream.stats.skipped == 1
    with rasterio.open(path) as ds:
        for batch in batches:
            for b, (_, row, col) in enumerate(batch["window"].tolist()):
                assert (row, col) != (0, 0)
                raw = ds.read(window=Window(col, row, 64, 64))
                assert_bits_equal(batch["image"][b], reference(raw, NORM, "float16"), "skip")


def test_workers_deliver_the_same_normalised_batches(files):
    kw = dict(sampler="random", patch_size=40, batch_size=4, length=8, seed=1,
              dtype="bfloat16", normalize=NORM)  # fmt: skip
    here = [b["image"] for b in make_stream([files["zstd-p2"]], **kw).loader()]
    there = make_stream([files["zstd-p2"]], workers=1, start_method="fork", **kw).loader()
    for a, b in zip(here, there, strict=True):
        assert_bits_equal(b["image"], a, "worker")


# ---- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["uint16", "int32", "uint8"])
def test_normalisation_needs_a_float_dtype(dtype):
    with pytest.raises(InputError, match=f"dtype '{dtype}'.*normalize needs a float") as exc:
        StreamConfig(dtype=dtype, normalize=NORM)
    assert exc.value.what == f"dtype '{dtype}'"


def test_one_value_per_selected_band(files):
    three = Normalization.from_mean_std((1.0, 2.0, 3.0), (1.0, 1.0, 1.0))
    with pytest.raises(InputError, match="4 selected bands") as exc:
        make_stream([files["zstd-p2"]], patch_size=64, normalize=three)
    assert exc.value.what == "normalize with 3 scale/offset values"
    assert "zstd-p2.tif" in exc.value.cause
    with pytest.raises(InputError, match=r"bands \(0, 1\) gives 2 selected bands"):
        StreamConfig(bands=(0, 1), normalize=three)
    stream = make_stream([files["zstd-p2"]], patch_size=64, bands=(0, 1, 2), normalize=three)
    assert stream.bands == [0, 1, 2]


@pytest.mark.parametrize("build,what", [
    (lambda: Normalization.from_mean_std((1.0, 2.0), (1.0, 0.0)), "normalize std"),
    (lambda: Normalization.from_mean_std((1.0,), (-2.0,)), "normalize std"),
    (lambda: Normalization.from_mean_std((1.0, 2.0), (1.0,)), "normalize mean"),
    (lambda: Normalization(scale=(math.nan, 1.0), offset=(0.0, 0.0)), "normalize scale"),
    (lambda: Normalization.from_scale_offset((1.0,), (math.inf,)), "normalize offset"),
    (lambda: Normalization.from_scale_offset((0.0,), (1.0,)), "normalize scale"),
    (lambda: Normalization.from_scale_offset((), ()), "normalize scale"),
    (lambda: Normalization.from_scale_offset("12", (1.0,)), "normalize scale"),
    (lambda: StreamConfig(normalize={"mean": [1.0]}), "normalize"),
])  # fmt: skip
def test_bad_numbers_are_refused_naming_the_input(build, what):
    with pytest.raises(InputError) as exc:
        build()
    assert exc.value.what.startswith(what)


def test_a_config_file_mapping_round_trips():
    """Config files hold mappings; `asdict` of a config gives one that builds it again."""
    cfg = StreamConfig(dtype="bfloat16", normalize={"mean": [10.0, 20.0], "std": [2.0, 4.0]})
    assert cfg.normalize == Normalization((0.5, 0.25), (-5.0, -5.0))
    assert StreamConfig(**dataclasses.asdict(cfg)) == cfg
    assert StreamConfig(dtype="float32").output_dtype(np.dtype("uint16")) == "float32"
    assert StreamConfig(normalize=cfg.normalize).output_dtype(np.dtype("uint16")) == "float32"
    assert StreamConfig().output_dtype(np.dtype("uint16")) == "uint16"


def test_bfloat16_rounding_in_runs_is_torchs():
    """The engine rounds to bfloat16 in runs torch keeps on the calling thread; the runs
    split a band's rows, and together they round as one `.to(torch.bfloat16)` does."""
    from ocog_lib.stream.dataset import _round_to_bf16

    rng = np.random.default_rng(4)
    stage = (rng.standard_normal((3, 300, 200)) * 10.0 ** rng.integers(-40, 38, (3, 300, 200)))
    stage = stage.astype(np.float32)
    stage[0, 0, :4] = (np.inf, -np.inf, -0.0, np.float32(1e-45))
    batch = np.zeros((2, 3, 310, 210), dtype=np.int16)  # a piece inside a bigger batch
    _round_to_bf16(batch[1, :, 5:305, 3:203], stage)
    want = torch.from_numpy(stage).to(torch.bfloat16).view(torch.int16).numpy()
    np.testing.assert_array_equal(batch[1, :, 5:305, 3:203], want)
    assert not batch[0].any() and not batch[1, :, :5].any()
    _round_to_bf16(batch[0, 0, :300, :200], stage[2])  # one band's piece
    np.testing.assert_array_equal(batch[0, 0, :300, :200], want[2])
    wide = np.repeat(stage[:, :2], 60, axis=2)  # 3 bands x 12000 px rows: a band at a time
    out = np.empty(wide.shape, dtype=np.int16)
    _round_to_bf16(out, wide)
    np.testing.assert_array_equal(out, np.repeat(want[:, :2], 60, axis=2))
