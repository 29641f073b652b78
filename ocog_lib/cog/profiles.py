"""COG profiles: the named ones, custom specs, and what each can write.

A variant is one prepared dataset rewritten under one profile (compression, level,
predictor, block size, interleave, overviews), so streaming benchmarks can compare formats
on the same pixels. The named profiles are the OCOG toolkit's (scripts/process/
create_benchmark_datasets.py): DEFLATE level 6 without predictor, uncompressed, and
LERC_ZSTD. The toolkit passed `zlevel=22` to LERC_ZSTD, which GDAL only applies to
DEFLATE, so its files got ZSTD's default level 9; `optimal_remote` names that level 9
explicitly (the COG driver's LEVEL does reach the ZSTD stage of LERC_ZSTD). Like the
toolkit (rio-cogeo's cog_translate) the named profiles build overviews with "nearest".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ocog_lib.errors import InputError

COMPRESSIONS = (
    "NONE", "DEFLATE", "ZSTD", "LZW", "LZMA", "PACKBITS",
    "LERC", "LERC_DEFLATE", "LERC_ZSTD", "WEBP", "JPEG",
)
LERC = ("LERC", "LERC_DEFLATE", "LERC_ZSTD")
LOSSY = ("WEBP", "JPEG")
PREDICTOR_OK = ("DEFLATE", "ZSTD", "LZW", "LZMA")
# LEVEL ranges of GDAL's COG driver (libdeflate allows 12); JPEG/WEBP: LEVEL is QUALITY
LEVEL_RANGE = {
    "DEFLATE": (1, 12), "LERC_DEFLATE": (1, 12), "ZSTD": (1, 22), "LERC_ZSTD": (1, 22),
    "LZMA": (0, 9), "JPEG": (1, 100), "WEBP": (1, 100),
}
RESAMPLINGS = ("nearest", "average", "bilinear", "cubic", "lanczos", "mode", "rms")


@dataclass(frozen=True)
class CogProfile:
    name: str
    compression: str = "DEFLATE"
    level: int | None = None
    predictor: int | None = None  # 1/None: none, 2: horizontal, 3: floating point
    blocksize: int = 512
    overview_levels: int | str = "AUTO"  # count, 0 for none, or "AUTO" (down to one block)
    overview_resampling: str = "nearest"
    interleave: str = "PIXEL"
    max_z_error: float = 0.0  # LERC only; 0 = lossless

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "compression", str(self.compression).upper())
        set_(self, "interleave", str(self.interleave).upper())
        set_(self, "overview_resampling", str(self.overview_resampling).lower())
        if self.predictor == 1:
            set_(self, "predictor", None)
        if isinstance(self.overview_levels, str):
            ov = self.overview_levels.strip().upper()
            set_(self, "overview_levels", int(ov) if ov.isdigit() else ov)

    @property
    def lossless(self) -> bool:
        if self.compression in LOSSY:
            return False
        return not (self.compression in LERC and self.max_z_error > 0)

    def creation_options(self, threads: str | int = "ALL_CPUS") -> dict[str, str]:
        """Options of GDAL's COG driver for this profile."""
        opts = {
            "COMPRESS": self.compression,
            "BLOCKSIZE": str(self.blocksize),
            "INTERLEAVE": self.interleave,
            "NUM_THREADS": str(threads),
            "BIGTIFF": "IF_SAFER",
        }
        if self.level is not None:
            opts["QUALITY" if self.compression in LOSSY else "LEVEL"] = str(self.level)
        if self.compression in PREDICTOR_OK:
            opts["PREDICTOR"] = {None: "NO", 2: "STANDARD", 3: "FLOATING_POINT"}[self.predictor]
        if self.compression in LERC:
            opts["MAX_Z_ERROR"] = repr(float(self.max_z_error))
        if self.overview_levels == 0:
            opts["OVERVIEWS"] = "NONE"
        else:
            opts["OVERVIEWS"] = "IGNORE_EXISTING"
            opts["OVERVIEW_RESAMPLING"] = self.overview_resampling.upper()
            if isinstance(self.overview_levels, int):
                opts["OVERVIEW_COUNT"] = str(self.overview_levels)
        return opts


PROFILES: dict[str, CogProfile] = {
    "default": CogProfile("default", "DEFLATE", level=6),
    "optimal_local": CogProfile("optimal_local", "NONE"),
    "optimal_remote": CogProfile("optimal_remote", "LERC_ZSTD", level=9, max_z_error=0.0),
}

_SPEC_KEYS = {
    "name": "name",
    "compression": "compression", "compress": "compression",
    "level": "level",
    "predictor": "predictor",
    "block": "blocksize", "blocksize": "blocksize", "block_size": "blocksize",
    "overviews": "overview_levels", "overview_levels": "overview_levels",
    "resampling": "overview_resampling", "overview_resampling": "overview_resampling",
    "interleave": "interleave",
    "max_z_error": "max_z_error", "mze": "max_z_error",
}


def _spec_name(p: dict) -> str:
    parts = [str(p["compression"]).lower()]
    if p.get("level") is not None:
        parts.append(f"l{p['level']}")
    if p.get("predictor") not in (None, 1):
        parts.append(f"p{p['predictor']}")
    parts.append(f"b{p.get('blocksize', 512)}")
    if str(p.get("interleave", "PIXEL")).upper() == "BAND":
        parts.append("band")
    ov = p.get("overview_levels", "AUTO")
    if str(ov).upper() != "AUTO":
        parts.append(f"ov{ov}")
    if p.get("overview_resampling", "nearest") != "nearest":
        parts.append(str(p["overview_resampling"]))
    if float(p.get("max_z_error", 0) or 0) > 0:
        parts.append(f"z{float(p['max_z_error']):g}")
    return "_".join(parts)


def _parse_value(key: str, value: object, spec: object) -> object:
    if key in ("level", "blocksize", "predictor"):
        if str(value).lower() in ("none", "no", ""):
            return None
        try:
            return int(value)
        except (TypeError, ValueError):
            raise InputError(f"profile {spec!r}", f"{key}={value!r} is not an integer") from None
    if key == "max_z_error":
        try:
            return float(value)
        except (TypeError, ValueError):
            raise InputError(f"profile {spec!r}", f"{key}={value!r} is not a number") from None
    if key == "overview_levels" and str(value).strip().isdigit():
        return int(value)
    return value


def profile_from_spec(spec: str | dict) -> CogProfile:
    """A custom profile from a dict or a string like 'zstd:level=1,predictor=2,block=256'."""
    if isinstance(spec, str):
        head, _, rest = spec.strip().partition(":")
        raw: dict[str, object] = {"compression": head}
        for part in filter(None, (p.strip() for p in rest.split(","))):
            key, eq, value = part.partition("=")
            if not eq:
                raise InputError(f"profile {spec!r}", f"'{part}' is not key=value")
            raw[key.strip().lower()] = value.strip()
    elif isinstance(spec, dict):
        raw = {str(k).lower(): v for k, v in spec.items()}
    else:
        raise InputError(f"profile {spec!r}", "expected a name, a spec string or a dict")
    fields: dict[str, object] = {}
    for key, value in raw.items():
        if key not in _SPEC_KEYS:
            raise InputError(
                f"profile {spec!r}", f"unknown key '{key}'; valid: {', '.join(sorted(_SPEC_KEYS))}"
            )
        field = _SPEC_KEYS[key]
        fields[field] = _parse_value(field, value, spec)
    if not fields.get("compression"):
        raise InputError(f"profile {spec!r}", "no compression given")
    fields["compression"] = str(fields["compression"]).upper()
    fields.setdefault("blocksize", 512)
    if fields["blocksize"] is None:
        fields["blocksize"] = 512
    name = str(fields.pop("name", "") or _spec_name(fields))
    profile = CogProfile(name=name, **fields)
    validate_profile(profile, None)
    return profile


def resolve_profile(name_or_spec: str | dict | CogProfile) -> CogProfile:
    """A named profile, a spec (see profile_from_spec), or the profile itself."""
    if isinstance(name_or_spec, CogProfile):
        return name_or_spec
    if isinstance(name_or_spec, dict):
        return profile_from_spec(name_or_spec)
    name = str(name_or_spec).strip()
    if name in PROFILES:
        return PROFILES[name]
    if ":" in name or name.upper() in COMPRESSIONS:
        return profile_from_spec(name)
    raise InputError(
        f"variant '{name}'",
        f"unknown COG variant; valid: {', '.join(PROFILES)}, or a spec such as "
        f"'zstd:level=1,predictor=2,block=256,interleave=band' "
        f"(compressions: {', '.join(COMPRESSIONS)})",
    )


def profile_rows() -> list[dict]:
    """The named profiles, as `ocog variants list` shows them."""
    return [
        dict(name=p.name, compression=p.compression, level=p.level, predictor=p.predictor or 1,
             block=p.blocksize, interleave=p.interleave.lower(), overviews=p.overview_levels,
             resampling=p.overview_resampling, max_z_error=p.max_z_error, lossless=p.lossless)
        for p in PROFILES.values()
    ]  # fmt: skip


def spec_syntax() -> list[str]:
    """How a custom profile is written (profile_from_spec), from the tables it checks."""
    aliases: dict[str, list[str]] = {}
    for key, field in _SPEC_KEYS.items():
        aliases.setdefault(field, []).append(key)

    def key(field: str) -> str:
        first, *more = aliases[field]
        return first + (f" (or {', '.join(more)})" if more else "")

    levels = ", ".join(f"{c.lower()} {lo}-{hi}" for c, (lo, hi) in LEVEL_RANGE.items())
    return [
        "CODEC[:key=value,...], e.g. zstd:level=1,predictor=2,block=256,interleave=band,"
        "overviews=2",
        f"CODEC: {', '.join(c.lower() for c in COMPRESSIONS)}",
        f"{key('level')}: {levels} (jpeg/webp: quality)",
        f"{key('predictor')}: 1 none, 2 horizontal, 3 floating point "
        f"({', '.join(c.lower() for c in PREDICTOR_OK)} only)",
        f"{key('blocksize')}: 128-1024 px, a multiple of 16 (default 512)",
        f"{key('overview_levels')}: a count 0-30 (0: none) or auto, down to one block "
        "(default auto)",
        f"{key('overview_resampling')}: {', '.join(RESAMPLINGS)} (default nearest)",
        f"{key('interleave')}: pixel (default) or band",
        f"{key('max_z_error')}: lerc codecs only, 0 = lossless (default 0)",
        f"{key('name')}: the variant's folder name (default: made from the settings, "
        "e.g. zstd_l1_p2_b256)",
    ]


def validate_profile(profile: CogProfile, dtype: str | None, *, bands: int | None = None) -> None:
    """Raise InputError when `profile` cannot be written (for `dtype`/`bands` when given)."""
    what = f"profile '{profile.name}'"
    c = profile.compression
    if c not in COMPRESSIONS:
        raise InputError(what, f"unknown compression {c}; valid: {', '.join(COMPRESSIONS)}")
    b = profile.blocksize
    if not isinstance(b, int) or not 128 <= b <= 1024 or b % 16:
        raise InputError(what, f"block size {b} must be a multiple of 16 in 128..1024")
    if profile.interleave not in ("PIXEL", "BAND"):
        raise InputError(what, f"interleave {profile.interleave} must be PIXEL or BAND")
    if profile.level is not None:
        if c not in LEVEL_RANGE:
            raise InputError(what, f"{c} takes no level (got {profile.level})")
        lo, hi = LEVEL_RANGE[c]
        if not lo <= profile.level <= hi:
            raise InputError(what, f"{c} level {profile.level} outside {lo}..{hi}")
    if profile.predictor not in (None, 2, 3):
        raise InputError(what, f"predictor {profile.predictor} must be 1, 2 or 3")
    if profile.predictor is not None and c not in PREDICTOR_OK:
        raise InputError(what, f"predictor applies to {', '.join(PREDICTOR_OK)} only, not {c}")
    if profile.max_z_error < 0 or (profile.max_z_error > 0 and c not in LERC):
        raise InputError(what, f"max_z_error {profile.max_z_error} needs LERC and >= 0")
    ov = profile.overview_levels
    if not (ov == "AUTO" or (isinstance(ov, int) and 0 <= ov <= 30)):
        raise InputError(what, f"overview_levels {ov!r} must be a count 0..30 or AUTO")
    if profile.overview_resampling not in RESAMPLINGS:
        raise InputError(
            what, f"overview resampling {profile.overview_resampling!r}; valid: {RESAMPLINGS}"
        )
    if dtype is not None:
        dt = np.dtype(dtype)
        if c in LOSSY and dt != np.uint8:
            raise InputError(what, f"{c} needs uint8 data, not {dt.name}")
        if profile.predictor == 3 and dt.kind != "f":
            raise InputError(what, f"predictor 3 (floating point) needs float data, not {dt.name}")
    if bands is not None:
        if c == "JPEG" and bands not in (1, 3):
            raise InputError(what, f"JPEG needs 1 or 3 bands, not {bands} (GDAL drops a 4th)")
        if c == "WEBP" and bands not in (3, 4):
            raise InputError(what, f"WEBP needs 3 or 4 bands, not {bands}")


def mask_profile(profile: CogProfile) -> CogProfile:
    """The lossless profile a label mask gets beside `profile`'s images (same block size).

    Masks are read with every sample, so they should cost little to decode. LERC buys
    nothing on class ids and decodes ~10x slower than plain ZSTD or DEFLATE on them (0.86
    vs 0.08 ms for a 512 x 512 uint8 tile here, at about the same size), so masks beside
    LERC_ZSTD / LERC images take ZSTD, beside LERC_DEFLATE take DEFLATE. A predictor
    differences class ids across boundaries: on the sample's masks ZSTD-1 with predictor
    2 was 40% larger and 2.5x slower to decode than ZSTD-9 without, so masks take no
    predictor, and ZSTD at least level 9 (its decode speed does not depend on the level).
    """
    predictor = None
    if profile.compression in LERC:
        comp = "DEFLATE" if profile.compression == "LERC_DEFLATE" else "ZSTD"
        level = profile.level if profile.compression != "LERC" else None
    elif profile.compression in LOSSY:
        comp, level = "DEFLATE", 6
    else:
        comp, level = profile.compression, profile.level
    if comp == "ZSTD":
        level = max(level or 9, 9)
    resampling = "mode" if profile.overview_resampling == "mode" else "nearest"
    return dataclasses.replace(
        profile,
        name=f"{profile.name}_mask",
        compression=comp,
        level=level,
        predictor=predictor,
        overview_resampling=resampling,
        interleave="PIXEL",
        max_z_error=0.0,
    )
