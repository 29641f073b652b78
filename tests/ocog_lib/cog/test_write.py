"""Writing COG variants: every profile writes a valid COG with the asked layout and, when
lossless, the source's exact pixels; bad input is named and leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import rasterio
import tifffile

import ocog_lib.cog.write as cog_write
from ocog_lib.cog.profiles import PROFILES, CogProfile, profile_from_spec, resolve_profile
from ocog_lib.cog.validate import check_lossless, validate_cog
from ocog_lib.cog.write import write_cog, write_variant
from ocog_lib.data.lineage import CONTENT_NAME, verify_folder
from ocog_lib.data.manifest import DatasetManifest, ManifestItem
from ocog_lib.errors import InputError
from tests.support.rasters import real_pixels

HEIGHT, WIDTH = 700, 1000  # not a multiple of any block size: edge tiles are partial


@pytest.fixture(scope="module", autouse=True)
def _one_writer():
    """This module's writes share one writer process (a write outside a cog_writer()
    block starts its own, ~0.5 s); the interrupt tests below run their own `ocog`."""
    with cog_write.cog_writer():
        yield


def _plain_tiff(path: Path, arr: np.ndarray) -> Path:
    bands, h, w = arr.shape
    with rasterio.open(
        path, "w", driver="GTiff", width=w, height=h, count=bands, dtype=arr.dtype.name,
        crs="EPSG:32618", transform=rasterio.transform.from_origin(435730, 4179460, 10, 10),
    ) as ds:
        ds.write(arr)
    return path


@pytest.fixture(scope="module")
def rasters(tmp_path_factory) -> dict[str, Path]:
    """Plain (striped) GeoTIFFs of real Sentinel-2 pixels in a few dtypes."""
    root = tmp_path_factory.mktemp("cog_src")
    return {
        "uint16": _plain_tiff(root / "u16.tif", real_pixels(4, HEIGHT, WIDTH, "uint16")),
        "float32": _plain_tiff(root / "f32.tif", real_pixels(4, HEIGHT, WIDTH, "float32")),
        "uint8": _plain_tiff(root / "u8.tif", real_pixels(3, HEIGHT, WIDTH, "uint8")),
    }


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def _tiff_tags(path: Path) -> tuple[int, int, int, int]:
    """(predictor, tile width, planar config, IFD count) as written in the file."""
    with tifffile.TiffFile(path) as tf:
        p = tf.pages[0]
        return int(p.predictor), int(p.tilewidth), int(p.planarconfig), len(tf.pages)


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_named_profiles_are_valid_and_pixel_identical(name, rasters, tmp_path):
    profile = PROFILES[name]
    res = write_cog(rasters["uint16"], tmp_path / f"{name}.tif", profile)
    assert validate_cog(res.dst).valid
    np.testing.assert_array_equal(_read(res.dst), _read(rasters["uint16"]))
    assert check_lossless(rasters["uint16"], res.dst)
    with rasterio.open(res.dst) as ds:
        assert ds.block_shapes[0] == (512, 512)
        assert ds.tags(ns="IMAGE_STRUCTURE")["INTERLEAVE"] == "PIXEL"
        assert ds.tags(ns="IMAGE_STRUCTURE").get("COMPRESSION", "NONE") == profile.compression
        assert ds.overviews(1) == [2]  # AUTO: halve until the image fits one 512 block
    assert res.bytes == res.dst.stat().st_size
    assert res.source_decoded_bytes == 4 * HEIGHT * WIDTH * 2
    assert res.compression_ratio == pytest.approx(res.source_decoded_bytes / res.bytes)
    assert res.lossless and res.variant == name


def test_level_reaches_the_zstd_stage_of_lerc_zstd(rasters, tmp_path):
    sizes = {
        lvl: write_cog(
            rasters["uint16"], tmp_path / f"l{lvl}.tif", CogProfile("x", "LERC_ZSTD", level=lvl)
        ).bytes
        for lvl in (1, 22)
    }
    assert sizes[22] < sizes[1]


def test_zstd_with_horizontal_predictor(rasters, tmp_path):
    profile = resolve_profile("zstd:level=1,predictor=2,block=256")
    res = write_cog(rasters["uint16"], tmp_path / "z.tif", profile)
    assert validate_cog(res.dst).valid and check_lossless(rasters["uint16"], res.dst)
    predictor, tile, planar, _ = _tiff_tags(res.dst)
    assert (predictor, tile, planar) == (2, 256, 1)


def test_float32_with_floating_point_predictor(rasters, tmp_path):
    profile = profile_from_spec({"compression": "deflate", "predictor": 3, "blocksize": 128})
    res = write_cog(rasters["float32"], tmp_path / "f.tif", profile)
    assert validate_cog(res.dst).valid
    np.testing.assert_array_equal(_read(res.dst), _read(rasters["float32"]))
    assert _tiff_tags(res.dst)[:2] == (3, 128)


def test_band_interleave_with_fixed_overview_count(rasters, tmp_path):
    profile = resolve_profile("zstd:predictor=2,block=256,interleave=band,overviews=2")
    res = write_cog(rasters["uint16"], tmp_path / "b.tif", profile)
    assert validate_cog(res.dst).valid
    np.testing.assert_array_equal(_read(res.dst), _read(rasters["uint16"]))
    predictor, tile, planar, ifds = _tiff_tags(res.dst)
    assert (predictor, tile, planar, ifds) == (2, 256, 2, 3)  # planar 2 = separate bands
    with rasterio.open(res.dst) as ds:
        assert ds.overviews(1) == [2, 4]
        # overviews are "nearest": every overview pixel is a source pixel of its block
        ov = ds.read(1, out_shape=(HEIGHT // 2, WIDTH // 2))
    assert np.isin(ov, _read(rasters["uint16"])[0]).all()


def test_no_overviews(rasters, tmp_path):
    res = write_cog(rasters["uint16"], tmp_path / "n.tif", resolve_profile("lzw:overviews=0"))
    assert _tiff_tags(res.dst)[3] == 1
    assert check_lossless(rasters["uint16"], res.dst)


def test_lossy_lerc_stays_within_its_error(rasters, tmp_path):
    profile = resolve_profile("lerc:max_z_error=2")
    assert not profile.lossless
    res = write_cog(rasters["uint16"], tmp_path / "l.tif", profile)
    assert validate_cog(res.dst).valid
    diff = np.abs(_read(res.dst).astype(np.int32) - _read(rasters["uint16"]).astype(np.int32))
    assert diff.max() <= 2
    assert diff.max() > 0 and not check_lossless(rasters["uint16"], res.dst)


def test_webp_on_uint8(rasters, tmp_path):
    profile = resolve_profile("webp:level=90")
    res = write_cog(rasters["uint8"], tmp_path / "w.tif", profile)
    assert validate_cog(res.dst).valid and not res.lossless
    with rasterio.open(res.dst) as ds:
        assert (ds.count, ds.tags(ns="IMAGE_STRUCTURE")["COMPRESSION"]) == (3, "WEBP")


# --- bad input to write_cog -------------------------------------------------------------------


def _assert_nothing_left(folder: Path, expected: set[str]) -> None:
    assert {p.name for p in folder.iterdir()} == expected


def test_missing_source(tmp_path):
    with pytest.raises(InputError, match=r"nope.tif: no such file"):
        write_cog(tmp_path / "nope.tif", tmp_path / "out.tif", PROFILES["default"])
    _assert_nothing_left(tmp_path, set())


def test_text_file_is_not_a_tiff(tmp_path):
    src = tmp_path / "notes.tif"
    src.write_text("this is not a raster\n")
    with pytest.raises(InputError, match=r"notes.tif: not a readable TIFF"):
        write_cog(src, tmp_path / "out.tif", PROFILES["default"])
    _assert_nothing_left(tmp_path, {"notes.tif"})


def test_truncated_tiff(rasters, tmp_path):
    tiled = write_cog(rasters["uint16"], tmp_path / "whole.tif", PROFILES["default"]).dst
    data = tiled.read_bytes()
    src = tmp_path / "half.tif"
    src.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"half.tif: GDAL could not write it as a COG"):
        write_cog(src, tmp_path / "out.tif", PROFILES["optimal_local"])
    _assert_nothing_left(tmp_path, {"whole.tif", "half.tif"})


@pytest.mark.parametrize("compression", ["WEBP", "JPEG"])
def test_lossy_8bit_codecs_on_uint16(compression, rasters, tmp_path):
    with pytest.raises(InputError, match=rf"u16.tif: profile.*{compression} needs uint8 data"):
        write_cog(rasters["uint16"], tmp_path / "out.tif", resolve_profile(compression.lower()))
    _assert_nothing_left(tmp_path, set())


def test_existing_file_survives_a_failed_write(rasters, tmp_path):
    dst = tmp_path / "keep.tif"
    dst.write_bytes(b"previous")
    src = tmp_path / "junk.tif"
    src.write_bytes(b"II*\x00junk")
    with pytest.raises(InputError, match="junk.tif"):
        write_cog(src, dst, PROFILES["default"])
    assert dst.read_bytes() == b"previous"
    _assert_nothing_left(tmp_path, {"keep.tif", "junk.tif"})


# --- variants of a prepared dataset ---------------------------------------------------------

ROW_KEYS = {
    "dataset", "variant", "item", "kind", "path", "bytes", "decoded_bytes", "compression_ratio",
    "write_seconds", "compression", "level", "predictor", "block_size", "interleave",
    "is_valid_cog", "lossless_ok", "content_hash",
}


def test_write_variant_of_the_sample(tiny_sample, tmp_path):
    src = tiny_sample.manifest
    out = tmp_path / "default"
    manifest, rows = write_variant(src, PROFILES["default"], out)
    assert manifest.dataset == "sample" and manifest.root == out
    loaded = DatasetManifest.load(out)
    assert [i.name for i in loaded.items] == [i.name for i in src.items]
    assert len(rows) == 2 * len(src.items)
    recorded = verify_folder(out)  # content.json written last, over every file
    assert set(json.loads((out / CONTENT_NAME).read_text())["files"]) == {
        "manifest.json", *(i.image for i in src.items), *(i.mask for i in src.items if i.mask)}
    for row in rows:
        assert set(row) == ROW_KEYS and row["content_hash"] == recorded
        assert row["is_valid_cog"] is True and row["lossless_ok"] is True
        assert row["compression_ratio"] == pytest.approx(row["decoded_bytes"] / row["bytes"])
    for item in loaded.items:
        for a, b in ((src.image_path(item), loaded.image_path(item)),
                     (src.mask_path(item), loaded.mask_path(item))):
            assert b.is_relative_to(out) and validate_cog(b).valid
            np.testing.assert_array_equal(_read(a), _read(b))


def test_lossy_variant_keeps_masks_exact(tiny_sample, tmp_path):
    profile = resolve_profile("lerc:max_z_error=1,block=256,overviews=0")
    _, rows = write_variant(tiny_sample.manifest, profile, tmp_path / "lossy")
    images = [r for r in rows if r["kind"] == "image"]
    masks = [r for r in rows if r["kind"] == "mask"]
    assert all(r["lossless_ok"] is None and r["compression"] == "LERC" for r in images)
    assert all(r["lossless_ok"] is True and r["compression"] == "ZSTD" for r in masks)
    assert all(r["block_size"] == 256 for r in rows)


def test_impossible_variant_for_the_dataset(tiny_sample, tmp_path):
    with pytest.raises(InputError, match="WEBP needs uint8"):
        write_variant(tiny_sample.manifest, resolve_profile("webp"), tmp_path / "webp")
    assert not (tmp_path / "webp" / "manifest.json").exists()
    with pytest.raises(InputError, match="own folder"):
        write_variant(tiny_sample.manifest, PROFILES["default"], tiny_sample.prepared)


# --- interrupts and what they leave -----------------------------------------------------------


@pytest.fixture(scope="module")
def slow_dataset(tmp_path_factory) -> Path:
    """$OCOG_DATA_DIR with a prepared dataset `big` whose scene takes GDAL tens of seconds
    to write at DEFLATE level 12: noise (nothing to gain, everything to try), 4 x 4096^2
    uint16. (2048^2, ~6 s, was once written whole before a starved test sent its signal.)
    The writes are interrupted early: the size costs only the plain TIFF's 128 MB."""
    data = tmp_path_factory.mktemp("slow_data")
    prepared = data / "prepared" / "big"
    (prepared / "scenes").mkdir(parents=True)
    pixels = np.random.default_rng(0).integers(0, 4096, (4, 4096, 4096), dtype=np.uint16)
    _plain_tiff(prepared / "scenes" / "scene.tif", pixels)
    DatasetManifest("big", {0: "any"}, [ManifestItem("scene", "scenes/scene.tif", None, "scene")]
                    ).save(prepared)  # fmt: skip
    return data


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_write(data: Path, variant: str) -> tuple[subprocess.Popen, Path]:
    """`ocog variants write` of the slow scene, once GDAL has begun writing its file."""
    cmd = [sys.executable, "-m", "ocog_lib.cli.main", "variants", "write", "--dataset", "big",
           "--variant", f"deflate:level=12,name={variant}", "--no-check", "--no-record"]
    # SIGINT as a terminal gives it: a runner (xdist's workers) may ignore SIGINT, and an
    # ignored signal stays ignored in its children, so the write would never see it
    proc = subprocess.Popen(cmd, env={**os.environ, "OCOG_DATA_DIR": str(data)}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_default_sigint)  # fmt: skip
    folder = data / "variants" / "big" / variant
    for _ in range(6000):  # a hang guard (polls, not a time limit)
        if folder.exists() and _files(folder):
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    else:
        raise AssertionError("GDAL never started writing")
    return proc, folder


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_interrupted_write_stops_and_leaves_nothing(sig, slow_dataset):
    proc, folder = _start_write(slow_dataset, f"slow_{sig.name.lower()}")
    try:
        helpers = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)  # a hang guard: GDAL alone needs ~25 s here
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, err
    assert f"ocog: interrupted ({sig.name})" in err and "Traceback" not in err
    assert _files(folder) == []  # neither the COG nor a temporary
    assert psutil.wait_procs(helpers, timeout=30)[1] == []  # no writer left running


def test_a_killed_write_is_cleaned_up_by_the_next(slow_dataset):
    proc, folder = _start_write(slow_dataset, "slow_sigkill")
    helpers = psutil.Process(proc.pid).children(recursive=True)
    proc.kill()  # SIGKILL: no cleanup can run
    proc.communicate(timeout=120)
    assert psutil.wait_procs(helpers, timeout=30)[1] == []  # the writer stopped with it
    left = _files(folder)
    hidden = [n for n in left if any(part.startswith(".") for part in Path(n).parts)]
    assert left and hidden == left  # temporaries only, no COG
    manifest = DatasetManifest.load(slow_dataset / "prepared" / "big")
    write_variant(manifest, resolve_profile("none:name=slow_sigkill"), folder, check=False)
    assert _files(folder) == ["content.json", "manifest.json", "scenes/scene.tif"]


def test_stale_temporaries_are_removed_and_nothing_else(tiny_sample, tmp_path):
    out = tmp_path / "v"
    sub = out / Path(tiny_sample.manifest.items[0].image).parent
    sub.mkdir(parents=True)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = [
        sub / f".ocog-tmp-{cog_write._HOST}-{gone.pid}-0123abcd",  # its writer was killed
        out / ".x.tif.89abcdef.tmp.ovr.tmp",  # GDAL's side file of a write before this one
        out / ".x.tif.89abcdef.tmp",
    ]
    stale[0].mkdir()
    (stale[0] / "x.tif.ovr.tmp").write_bytes(b"half")
    for old in stale[1:]:
        old.write_bytes(b"half")
        os.utime(old, (time.time() - 2 * cog_write.STALE_AFTER_S,) * 2)
    kept = [
        out / f".ocog-tmp-{cog_write._HOST}-{os.getpid()}-fedcba98",  # a write still running
        out / ".y.tif.01234567.tmp",  # too recent to tell
        out / ".keep", out / "notes.tmp", out / ".x.tif.tmp", sub / ".ocog-tmp-notes",
    ]  # fmt: skip
    kept[0].mkdir()
    for path in kept[1:]:
        path.write_bytes(b"mine")
    assert sorted(cog_write.remove_stale_temps(out)) == sorted(stale)
    stale[0].mkdir()  # and write_variant runs it first
    write_variant(tiny_sample.manifest, PROFILES["optimal_local"], out, check=False)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)
