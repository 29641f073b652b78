"""COG profiles: the named ones are the toolkit's, custom specs parse the same from a
string or a dict, and a profile that cannot be written is named with its cause."""

from __future__ import annotations

import pytest

from ocog_lib.cog.profiles import (
    PROFILES,
    CogProfile,
    mask_profile,
    profile_from_spec,
    resolve_profile,
    validate_profile,
)
from ocog_lib.errors import InputError


def test_named_profiles_are_the_toolkits():
    d, local, remote = PROFILES["default"], PROFILES["optimal_local"], PROFILES["optimal_remote"]
    assert (d.compression, d.level, d.predictor, d.blocksize) == ("DEFLATE", 6, None, 512)
    assert local.compression == "NONE" and local.blocksize == 512
    assert (remote.compression, remote.max_z_error, remote.level) == ("LERC_ZSTD", 0.0, 9)
    assert all(p.interleave == "PIXEL" and p.lossless for p in PROFILES.values())


def test_spec_string_and_dict_give_the_same_profile():
    s = profile_from_spec("ZSTD:level=1,predictor=2,block=256,interleave=band,overviews=3")
    d = profile_from_spec(
        {"compression": "zstd", "level": 1, "predictor": 2, "blocksize": 256,
         "interleave": "BAND", "overview_levels": 3}
    )
    assert s == d
    assert (s.compression, s.level, s.predictor, s.blocksize, s.interleave, s.overview_levels) == (
        "ZSTD", 1, 2, 256, "BAND", 3
    )
    assert s.name == "zstd_l1_p2_b256_band_ov3"
    assert profile_from_spec("deflate:name=mine").name == "mine"
    assert resolve_profile("default") is PROFILES["default"]


@pytest.mark.parametrize(
    "spec, cause",
    [
        ("zstd:colour=red", "unknown key 'colour'"),
        ("zstd:level=high", "level='high' is not an integer"),
        ("zstd:level", "not key=value"),
        ("brotli", "unknown compression BROTLI"),
    ],
)
def test_bad_specs_are_named(spec, cause):
    with pytest.raises(InputError, match=cause):
        profile_from_spec(spec)


def test_unknown_variant_lists_the_valid_ones():
    valid = "default, optimal_local, optimal_remote"
    with pytest.raises(InputError, match=rf"variant 'fastest'.*{valid}"):
        resolve_profile("fastest")


@pytest.mark.parametrize(
    "profile, dtype, cause",
    [
        (CogProfile("w", "WEBP"), "uint16", "WEBP needs uint8"),
        (CogProfile("j", "JPEG"), "uint16", "JPEG needs uint8"),
        (CogProfile("p3", "DEFLATE", predictor=3), "uint16", "predictor 3"),
        (CogProfile("b", "DEFLATE", blocksize=100), "uint16", "block size 100"),
        (CogProfile("b", "DEFLATE", blocksize=2048), "uint16", "block size 2048"),
        (CogProfile("b", "DEFLATE", blocksize=520), "uint16", "block size 520"),
        (CogProfile("n", "NONE", predictor=2), "uint16", "predictor applies to"),
        (CogProfile("l", "LERC", level=3), "uint16", "LERC takes no level"),
        (CogProfile("z", "ZSTD", level=30), "uint16", "level 30 outside 1..22"),
        (CogProfile("m", "ZSTD", max_z_error=1.0), "uint16", "max_z_error"),
        (CogProfile("i", "ZSTD", interleave="TILE"), "uint16", "interleave TILE"),
    ],
)
def test_impossible_profiles_are_named(profile, dtype, cause):
    with pytest.raises(InputError, match=rf"profile '{profile.name}'.*{cause}"):
        validate_profile(profile, dtype)


def test_jpeg_would_drop_a_fourth_band():
    with pytest.raises(InputError, match="JPEG needs 1 or 3 bands"):
        validate_profile(CogProfile("j", "JPEG"), "uint8", bands=4)


def test_masks_stay_lossless():
    remote = mask_profile(PROFILES["optimal_remote"])
    assert (remote.compression, remote.level) == ("ZSTD", 9)  # LERC buys nothing on class ids
    lossy = mask_profile(resolve_profile("lerc_deflate:max_z_error=5,block=256"))
    assert (lossy.compression, lossy.max_z_error, lossy.blocksize) == ("DEFLATE", 0.0, 256)
    assert mask_profile(resolve_profile("webp")).compression == "DEFLATE"
    zstd = mask_profile(resolve_profile("zstd:level=1,predictor=3"))
    assert (zstd.compression, zstd.level, zstd.predictor) == ("ZSTD", 9, None)
    assert all(mask_profile(p).lossless for p in PROFILES.values())
