"""The variant check holds ocog's decoder to GDAL: a decoder bug can no longer pass it."""

from __future__ import annotations

import numpy as np
import pytest

import ocog_lib.cog.verify as verify
from ocog_lib.cog.variants import _write_checked, resolve_profile
from ocog_lib.errors import OcogError
from tests.support.rasters import real_pixels, write_raster


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
    assert verify.first_mismatch(tmp_path / "out.tif") is None


def test_a_decoder_that_drops_nan_fails_the_variant_check(tmp_path, monkeypatch):
    src = float_scene_with_nan(tmp_path / "src.tif")
    real = verify.decode_tile

    def nan_as_zero(index, raw, **kw):  # what the engine did to LERC NaN before
        return np.nan_to_num(real(index, raw, **kw), nan=0.0)

    monkeypatch.setattr(verify, "decode_tile", nan_as_zero)
    with pytest.raises(OcogError, match=r"out\.tif: ocog's decoder differs from GDAL at tile "
                                        r"\(row 0, col 0, plane 0\)"):  # fmt: skip
        _write_checked(src, tmp_path / "out.tif", resolve_profile("lerc_zstd:block=128"), True)
