"""Checks of a written COG: rio-cogeo's rules, the lossless check, and ocog's decoder held to
GDAL (a decoder bug can no longer pass the variant check)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

import ocog_lib.cog.validate as validate
from ocog_lib.cog.profiles import PROFILES, resolve_profile
from ocog_lib.cog.validate import check_lossless, validate_cog
from ocog_lib.cog.write import _write_checked, cog_writer, write_cog
from ocog_lib.errors import OcogError
from tests.support.rasters import real_pixels, write_raster

HEIGHT, WIDTH = 700, 1000  # not a multiple of any block size: edge tiles are partial


@pytest.fixture(scope="module", autouse=True)
def _one_writer():
    """This module's writes share one writer process (each write outside a cog_writer()
    block starts its own, ~0.5 s)."""
    with cog_writer():
        yield


def _plain_tiff(path: Path, arr: np.ndarray) -> Path:
    return write_raster(path, arr, driver="GTiff")


@pytest.fixture(scope="module")
def rasters(tmp_path_factory) -> dict[str, Path]:
    """Plain (striped) GeoTIFFs of real Sentinel-2 pixels."""
    root = tmp_path_factory.mktemp("validate_src")
    return {
        "uint16": _plain_tiff(root / "u16.tif", real_pixels(4, HEIGHT, WIDTH, "uint16")),
        "uint8": _plain_tiff(root / "u8.tif", real_pixels(3, HEIGHT, WIDTH, "uint8")),
    }


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def test_check_lossless_finds_one_changed_pixel(rasters, tmp_path):
    arr = _read(rasters["uint16"])
    arr[3, 650, 999] += 1
    changed = write_cog(_plain_tiff(tmp_path / "c.tif", arr), tmp_path / "c_cog.tif",
                        PROFILES["default"])
    assert not check_lossless(rasters["uint16"], changed.dst)
    assert not check_lossless(rasters["uint16"], rasters["uint8"])  # other shape/dtype


def test_validate_cog_rejects_a_striped_tiff(rasters):
    result = validate_cog(rasters["uint16"])
    assert not result.valid and result.errors





def float_scene_with_nan(path):
    """Real pixels as float32, NaN holes that differ per band (as LERC stores them)."""
    arr = real_pixels(3, 200, 300, "float32")
    arr[0, 10:90, 20:150] = np.nan
    arr[2, 120:190, 100:290] = np.nan
    return write_raster(path, arr, driver="GTiff")


@pytest.mark.parametrize("spec", ["lerc_zstd:block=128", "zstd:predictor=3,block=128",
                                  "deflate:block=128,interleave=band"])  # fmt: skip
def test_a_written_float_variant_decodes_as_gdal_reads_it(tmp_path, spec):
    src = float_scene_with_nan(tmp_path / "src.tif")
    row = _write_checked(src, tmp_path / "out.tif", resolve_profile(spec), check=True)
    assert row["lossless_ok"] is True
    assert validate.first_mismatch(tmp_path / "out.tif") is None


def test_a_decoder_that_drops_nan_fails_the_variant_check(tmp_path, monkeypatch):
    src = float_scene_with_nan(tmp_path / "src.tif")
    real = validate.decode_tile

    def nan_as_zero(index, raw, **kw):  # what the engine did to LERC NaN before
        return np.nan_to_num(real(index, raw, **kw), nan=0.0)

    monkeypatch.setattr(validate, "decode_tile", nan_as_zero)
    with pytest.raises(OcogError, match=r"out\.tif: ocog's decoder differs from GDAL at tile "
                                        r"\(row 0, col 0, plane 0\)"):  # fmt: skip
        _write_checked(src, tmp_path / "out.tif", resolve_profile("lerc_zstd:block=128"), True)
