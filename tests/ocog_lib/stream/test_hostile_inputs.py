"""Engine-side hostile inputs: each bad value is a one-line InputError naming it (field
and value, or the file), raised before any batch; a local file name that looks like a
signed URL (`x?sig=abc.tif`) is a file name and streams bit-exactly."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from ocog_lib.errors import InputError
from ocog_lib.storage import LocalFile, open_source
from ocog_lib.stream.config import StreamConfig
from ocog_lib.stream.dataset import make_stream
from tests.support.rasters import real_pixels, write_raster


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    return write_raster(
        root / "scene.tif", real_pixels(2, 160, 200, "uint16"), compress="DEFLATE", blocksize=64
    )


BAD_CONFIG = [
    ("batch_size", -3),
    ("batch_size", 0),
    ("batch_size", 2.5),
    ("batch_size", True),
    ("patch_size", 0),
    ("patch_size", -64),
    ("patch_size", "64"),
    ("length", -1),
    ("length", 0),
    ("seed", -1),
    ("seed", "x"),
    ("prefetch", -1),
    ("threads", -2),
    ("workers", -1),
    ("io_threads", -5),
    ("merge_gap", -1),
    ("shuffle_tiles", 0),
    ("patches_per_tile", -1),
    ("cache_mb", -1),
    ("cache_mb", float("nan")),
    ("cache_mb", float("inf")),
    ("cache_mb", "128"),
    ("sampler", "bogus"),
    ("bands", ()),
    ("bands", (0, 0)),
    ("bands", (-1,)),
    ("bands", (0.5,)),
    ("bands", "01"),
    ("dtype", "bogus"),
    ("dtype", "U8"),
    ("dtype", "complex64"),
    ("on_error", "ignore"),
    ("pin_memory", "yes"),
    ("pin_memory", 1.0),
    ("pin_memory", 0),
    ("channels_last", "yes"),
    ("channels_last", 1.0),
    ("start_method", "teleport"),
]


@pytest.mark.parametrize("name,value", BAD_CONFIG, ids=[f"{n}={v!r}" for n, v in BAD_CONFIG])
def test_bad_config_values_name_the_field_and_value(scene, name, value):
    with pytest.raises(InputError) as err:
        make_stream([scene], **{name: value})
    msg = str(err.value)
    assert msg.startswith(("band", name)) and "\n" not in msg, msg
    shown = repr(value) if name != "bands" else ""
    assert shown in msg or str(value) in msg, msg
    with pytest.raises(InputError):  # the config alone refuses it, before any file opens
        StreamConfig(**{name: value})


def test_good_edge_values_are_accepted(scene):
    cfg = StreamConfig(prefetch=0, threads=0, workers=0, cache_mb=0, io_threads=-1, seed=0)
    stream = make_stream([scene], **{**cfg.__dict__, "length": 1, "patch_size": 32})
    assert sum(len(b["image"]) for b in stream) == 1
    assert make_stream([scene], bands=[1], dtype=np.float32, length=2, patch_size=32).bands == [1]


def test_band_out_of_range_names_the_file(scene):
    with pytest.raises(InputError, match=r"band 2: out of range: .*scene.tif has 2 bands"):
        make_stream([scene], bands=(0, 2), patch_size=64)


def test_patch_larger_than_the_raster_names_the_file(scene):
    with pytest.raises(InputError) as err:
        make_stream([scene], patch_size=180)
    assert err.value.what == str(scene) and "160x200" in err.value.cause


def test_directory_empty_list_and_one_path(scene, tmp_path):
    with pytest.raises(InputError, match="is a directory") as err:
        make_stream([tmp_path])
    assert err.value.what == str(tmp_path)
    with pytest.raises(InputError, match="images: none given"):
        make_stream([])
    with pytest.raises(InputError, match="images"):
        make_stream(None)
    # one path, not a list: a list of one (not of its letters)
    assert make_stream(str(scene), length=2, patch_size=32).images == [str(scene)]


def test_missing_file_named_with_its_secret_masked(tmp_path):
    with pytest.raises(InputError) as err:
        make_stream([str(tmp_path / "x.tif?sv=1&sig=SECRETVALUE")])
    assert "SECRETVALUE" not in str(err.value) and "file not found" in str(err.value)


LAYOUTS = {
    "deflate": dict(compress="DEFLATE", blocksize=64),  # tile cache
    "none": dict(compress="NONE", blocksize=64),  # direct reads
    "striped": dict(driver="GTiff", compress="LZW"),  # GDAL fallback
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_local_file_named_like_a_signed_url_streams_bit_exactly(tmp_path, layout):
    arr = real_pixels(2, 160, 200, "uint16")
    real = write_raster(tmp_path / "real.tif", arr, **LAYOUTS[layout])
    odd = tmp_path / "x?sig=abc&token=t0k3n.tif"
    shutil.copy(real, odd)
    src = open_source(str(odd))
    assert isinstance(src, LocalFile) and src.path == str(odd)
    stream = make_stream([str(odd)], patch_size=48, batch_size=4, length=12, threads=1)
    r = stream.rasters[0]
    assert r.uri == str(odd)  # a file name is shown as it is: nothing in it is a secret
    assert r.fast == (layout != "striped") and r.direct == (layout == "none")
    n = 0
    with rasterio.open(real) as ds:
        for batch in stream:
            for b, (_, row, col) in enumerate(batch["window"].tolist()):
                want = ds.read(window=Window(col, row, 48, 48))
                np.testing.assert_array_equal(batch["image"][b].numpy(), want)
                n += 1
    stream.close()
    assert n == 12
