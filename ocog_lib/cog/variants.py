"""COG variants: named and custom profiles, writing with GDAL's COG driver, validation.

A variant is one prepared dataset rewritten under one profile (compression, level,
predictor, block size, interleave, overviews), so streaming benchmarks can compare formats
on the same pixels. The named profiles are the OCOG toolkit's (scripts/process/
create_benchmark_datasets.py): DEFLATE level 6 without predictor, uncompressed, and
LERC_ZSTD. The toolkit passed `zlevel=22` to LERC_ZSTD, which GDAL only applies to
DEFLATE, so its files got ZSTD's default level 9; `optimal_remote` names that level 9
explicitly (the COG driver's LEVEL does reach the ZSTD stage of LERC_ZSTD). Like the
toolkit (rio-cogeo's cog_translate) the named profiles build overviews with "nearest".

GDAL writes in a child process (see _Writer) into a folder of the write's own beside the
file, renamed into place when done: Ctrl-C stops a write at once and leaves nothing, and
what a killed write left is removed by the next write of that variant.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
import pickle
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import rasterio
import rasterio.env
import rasterio.shutil
from rasterio._err import CPLE_BaseError  # GDAL errors raised mid-read (truncated files)
from rasterio.errors import RasterioError
from rasterio.windows import Window

from ocog_lib.data.manifest import DatasetManifest
from ocog_lib.env import exact_env
from ocog_lib.errors import InputError, OcogError

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
CHECK_ROWS = 512  # rows per block when comparing pixels
CHECK_CACHE_BYTES = 64 * 1024 * 1024  # rasterio.Env takes bytes for GDAL_CACHEMAX
# GDAL's default block cache (5% of RAM) only inflates RSS when writing a 1 GiB scene;
# 256 MiB writes as fast (measured on the 8192 px bench scenes, 2 cores)
WRITE_CACHE_BYTES = 256 * 1024 * 1024
GDAL_ERRORS = (RasterioError, CPLE_BaseError)
# A write happens in a folder of its own beside the file, named after its writer; a later
# write removes such folders once their writer is gone (same host, dead pid) or older than
# STALE_AFTER_S, and the names of writes before it (atomic_path's '.<name>.tif.<hex>.tmp'
# and GDAL's side files of them) once older than STALE_AFTER_S. Nothing else is removed.
TMP_PREFIX = ".ocog-tmp-"
_HOST = re.sub(r"[^\w.-]", "_", socket.gethostname()) or "host"
_TMP_DIR = re.compile(re.escape(TMP_PREFIX) + r"(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{8}")
_OLD_TMP = re.compile(r"\..+\.tif\.[0-9a-f]{8}\.tmp(\.[\w.]+)?")
STALE_AFTER_S = 3600.0


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


@dataclass(frozen=True)
class CogWriteResult:
    src: Path
    dst: Path
    bytes: int
    source_decoded_bytes: int
    compression_ratio: float  # decoded / bytes (overviews included in bytes)
    write_seconds: float
    variant: str
    compression: str
    level: int | None
    predictor: int | None
    block_size: int
    interleave: str
    overview_levels: int | str
    max_z_error: float
    lossless: bool


@dataclass(frozen=True)
class CogValidation:
    valid: bool
    errors: list[str]
    warnings: list[str]


def _open_source(src: Path) -> tuple[str, int, int]:
    """(dtype, bands, decoded bytes) of a readable raster, or InputError naming the cause."""
    if not src.exists():
        raise InputError(src, "no such file")
    if not src.is_file():
        raise InputError(src, "not a file")
    try:
        with rasterio.open(src) as ds:
            if ds.driver not in ("GTiff", "COG"):
                raise InputError(src, f"not a TIFF (GDAL reads it as {ds.driver})")
            dtype, bands = ds.dtypes[0], ds.count
            decoded = ds.width * ds.height * ds.count * np.dtype(dtype).itemsize
    except GDAL_ERRORS as exc:
        raise InputError(src, f"not a readable TIFF ({exc})") from exc
    return dtype, bands, decoded


def _band_interleaved_cog(src: Path, dst: Path, profile: CogProfile, threads: str | int) -> None:
    """GDAL 3.10's COG driver ignores INTERLEAVE=BAND (it came in 3.11); rio-cogeo's GTiff
    route honours it: a tiled temporary file beside `dst` gets the overviews, then GTiff's
    COPY_SRC_OVERVIEWS writes the COG layout."""
    from rio_cogeo.cogeo import cog_translate

    c = profile.compression
    kw: dict[str, object] = dict(
        driver="GTiff", interleave="band", tiled=True, blockxsize=profile.blocksize,
        blockysize=profile.blocksize, compress=c, num_threads=str(threads), bigtiff="IF_SAFER",
    )
    if profile.level is not None:
        key = {"DEFLATE": "zlevel", "LERC_DEFLATE": "zlevel", "ZSTD": "zstd_level",
               "LERC_ZSTD": "zstd_level", "LZMA": "lzma_preset", "JPEG": "jpeg_quality",
               "WEBP": "webp_level"}[c]
        kw[key] = profile.level
    if c in PREDICTOR_OK and profile.predictor:
        kw["predictor"] = profile.predictor
    if c in LERC:
        kw["max_z_error"] = float(profile.max_z_error)
    ov = profile.overview_levels
    cog_translate(
        src, dst, kw,
        overview_level=None if ov == "AUTO" else int(ov),
        overview_resampling=profile.overview_resampling,
        in_memory=False,  # its default keeps scenes up to 10980 px in RAM
        quiet=True,
    )


@contextlib.contextmanager
def _private_tmp(dst: Path) -> Iterator[Path]:
    """A temporary path in a folder of this write's own beside `dst`: GDAL's side files
    (`.ovr.tmp`) and rio-cogeo's temporary GTiff land there too, and the whole folder
    goes when the write ends, however it ends."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    folder = dst.parent / f"{TMP_PREFIX}{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    try:
        yield folder / dst.name
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _gdal_write(src: Path, tmp: Path, profile: CogProfile, bands: int, threads: str | int,
                env_options: dict) -> float:
    """GDAL's COG write of `src` (`bands` bands) to `tmp`; its seconds."""
    t0 = time.perf_counter()
    with rasterio.Env(**{**env_options, "GDAL_CACHEMAX": WRITE_CACHE_BYTES}):
        if profile.interleave == "BAND" and bands > 1:
            _band_interleaved_cog(src, tmp, profile, threads)
        else:
            rasterio.shutil.copy(src, tmp, driver="COG", **profile.creation_options(threads))
    return time.perf_counter() - t0


def _writer_loop() -> None:
    """A writer process (see _Writer): requests in on stdin, outcomes out, one at a time.

    A reader thread takes the requests, so EOF (the parent closed the pipe, or was killed)
    ends this process at once, even in the middle of a write.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides: it kills this process
    requests, replies = os.fdopen(os.dup(0), "rb"), os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print must not land in the replies
    inbox: queue.Queue = queue.Queue()

    def read() -> None:
        with contextlib.suppress(Exception):
            while True:
                inbox.put(pickle.load(requests))
        os._exit(0)

    threading.Thread(target=read, daemon=True).start()
    while True:
        src, tmp, profile, bands, threads, environ, env_options = inbox.get()
        try:
            with exact_env(environ):  # the caller's environment, for this write only
                outcome: object = _gdal_write(Path(src), Path(tmp), profile, bands, threads,
                                              env_options)
        except Exception as exc:  # noqa: BLE001 - the parent raises it
            outcome = exc
        try:
            data = pickle.dumps(outcome)
        except Exception:  # noqa: BLE001 - an exception that does not pickle
            data = pickle.dumps(OcogError(f"{src}: {type(outcome).__name__}: {outcome}"))
        replies.write(data)
        replies.flush()


class _Writer:
    """GDAL's COG writes in a child process, so that Ctrl-C stops one at once.

    rasterio's copy takes no progress callback, so GDAL cannot be asked to stop, and a
    signal reaches Python only once the C call returns (minutes on a large scene). Here
    the parent waits on a pipe instead: on KeyboardInterrupt (or any exception) it kills
    the child, and write_cog removes the temporary folder. The child is started on the
    first write and serves the writes of one `cog_writer()` block.
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None

    def write(self, request: tuple) -> float:
        if self._proc is None:
            # our sys.path, not the working directory (-P): the same ocog_lib as ours; its
            # own session: a Ctrl-C at the terminal reaches only us, and we kill it
            path = os.pathsep.join(p for p in sys.path if p)
            self._proc = subprocess.Popen(
                [sys.executable, "-P", "-c", "from ocog_lib.cog.variants import _writer_loop; "
                 "_writer_loop()"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True,
                env={**os.environ, "PYTHONPATH": path},
            )  # fmt: skip
        proc = self._proc
        try:
            proc.stdin.write(pickle.dumps(request))
            proc.stdin.flush()
            outcome = pickle.load(proc.stdout)
        except BaseException as exc:
            self.close(kill=True)
            if isinstance(exc, (EOFError, OSError, pickle.UnpicklingError)):
                raise OcogError(f"{request[0]}: the COG writer process died "
                                f"(exit code {proc.returncode})") from exc  # fmt: skip
            raise
        if isinstance(outcome, BaseException):
            raise outcome
        return float(outcome)

    def close(self, *, kill: bool = False) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if kill:
            proc.kill()
        with contextlib.suppress(OSError):
            proc.stdin.close()  # EOF: the child exits
        proc.wait()
        proc.stdout.close()


_WRITER: contextvars.ContextVar[_Writer | None] = contextvars.ContextVar("cog_writer",
                                                                         default=None)


@contextlib.contextmanager
def cog_writer() -> Iterator[_Writer]:
    """One writer process for every write_cog in this block (and thread); nested blocks
    share the outer one. Outside a block, each write_cog starts its own."""
    writer = _WRITER.get()
    if writer is not None:
        yield writer
        return
    writer = _Writer()
    token = _WRITER.set(writer)
    try:
        yield writer
    finally:
        _WRITER.reset(token)
        writer.close()


def write_cog(
    src: Path, dst: Path, profile: CogProfile, *, threads: str | int = "ALL_CPUS"
) -> CogWriteResult:
    """Write `src` as a COG at `dst` under `profile`; nothing lands at `dst` on failure.

    A Ctrl-C stops the write at once (GDAL runs in a child process that is killed), and
    no temporary file survives it.
    """
    src, dst = Path(src), Path(dst)
    dtype, bands, decoded = _open_source(src)
    try:
        validate_profile(profile, dtype, bands=bands)
    except InputError as exc:
        raise InputError(src, str(exc)) from exc
    env_options = rasterio.env.getenv() if rasterio.env.hasenv() else {}
    try:
        with cog_writer() as writer, _private_tmp(dst) as tmp:
            request = (str(src), str(tmp), profile, bands, threads, dict(os.environ),
                       env_options)  # fmt: skip
            seconds = writer.write(request)
            os.replace(tmp, dst)
    except GDAL_ERRORS as exc:
        raise InputError(src, f"GDAL could not write it as a COG ({exc})") from exc
    size = dst.stat().st_size
    return CogWriteResult(
        src=src,
        dst=dst,
        bytes=size,
        source_decoded_bytes=decoded,
        compression_ratio=decoded / size,
        write_seconds=seconds,
        variant=profile.name,
        compression=profile.compression,
        level=profile.level,
        predictor=profile.predictor,
        block_size=profile.blocksize,
        interleave=profile.interleave,
        overview_levels=profile.overview_levels,
        max_z_error=profile.max_z_error,
        lossless=profile.lossless,
    )


def validate_cog(path: Path) -> CogValidation:
    """rio-cogeo's COG rules (tiling, IFD and overview order, header before data)."""
    from rio_cogeo.cogeo import cog_validate

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    try:
        valid, errors, warnings = cog_validate(path, quiet=True)
    except GDAL_ERRORS as exc:
        raise InputError(path, f"not a readable TIFF ({exc})") from exc
    return CogValidation(valid=bool(valid), errors=list(errors), warnings=list(warnings))


def check_lossless(src: Path, dst: Path) -> bool:
    """True when `dst` holds exactly `src`'s full-resolution pixels (read in row blocks)."""
    src, dst = Path(src), Path(dst)
    for p in (src, dst):
        if not p.is_file():
            raise InputError(p, "no such file")
    try:
        with (
            rasterio.Env(GDAL_CACHEMAX=CHECK_CACHE_BYTES),
            rasterio.open(src) as a,
            rasterio.open(dst) as b,
        ):
            if (a.count, a.height, a.width, a.dtypes) != (b.count, b.height, b.width, b.dtypes):
                return False
            floating = np.dtype(a.dtypes[0]).kind == "f"
            for y0 in range(0, a.height, CHECK_ROWS):
                win = Window(0, y0, a.width, min(CHECK_ROWS, a.height - y0))
                if not np.array_equal(a.read(window=win), b.read(window=win), equal_nan=floating):
                    return False
    except GDAL_ERRORS as exc:
        raise InputError(f"{src} vs {dst}", f"could not read both ({exc})") from exc
    return True


def _writer_gone(path: Path, match: re.Match | None) -> bool:
    """Whether the write that made this temporary is over: its process is gone (same
    host), or the temporary is older than STALE_AFTER_S."""
    if match is not None and match["host"] == _HOST and not psutil.pid_exists(int(match["pid"])):
        return True
    try:
        return time.time() - path.lstat().st_mtime > STALE_AFTER_S
    except FileNotFoundError:
        return False


def remove_stale_temps(folder: Path) -> list[Path]:
    """Remove what interrupted or killed writes left under `folder`: ocog's own temporary
    names only (see TMP_PREFIX), once their writer is gone; returns what was removed."""
    removed: list[Path] = []
    for root, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            path = Path(root) / name
            is_dir = name in dirs and not path.is_symlink()
            match = _TMP_DIR.fullmatch(name) if is_dir else None
            ours = match is not None or (name in files and _OLD_TMP.fullmatch(name))
            if ours and _writer_gone(path, match):
                if is_dir:
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
        dirs[:] = [d for d in dirs if not _TMP_DIR.fullmatch(d)]  # never walk into one
    return removed


def _write_checked(src: Path, dst: Path, prof: CogProfile, check: bool) -> dict:
    """write_cog, then (with check) validation and the lossless check; the stats row."""
    res = write_cog(src, dst, prof)
    valid = validate_cog(res.dst) if check else None
    lossless_ok = check_lossless(src, res.dst) if check and prof.lossless else None
    if valid is not None and not valid.valid:
        raise OcogError(f"{res.dst}: not a valid COG ({'; '.join(valid.errors)})")
    if lossless_ok is False:
        raise OcogError(f"{res.dst}: pixels differ from {src} under lossless {prof.name}")
    if check:  # GDAL against GDAL passes a decoder bug of ocog's own: hold ours to GDAL
        from ocog_lib.cog.verify import first_mismatch

        where = first_mismatch(res.dst)
        if where is not None:
            raise OcogError(f"{res.dst}: ocog's decoder differs from GDAL at {where}")
    return dict(
        path=str(res.dst),
        bytes=res.bytes,
        decoded_bytes=res.source_decoded_bytes,
        compression_ratio=res.compression_ratio,
        write_seconds=res.write_seconds,
        compression=res.compression,
        level=res.level,
        predictor=res.predictor,
        block_size=res.block_size,
        interleave=res.interleave,
        is_valid_cog=None if valid is None else valid.valid,
        lossless_ok=lossless_ok,
    )


def write_variant(
    manifest: DatasetManifest, profile: CogProfile, out_dir: Path, *, check: bool = True
) -> tuple[DatasetManifest, list[dict]]:
    """Every image and mask of a prepared dataset as COGs under `out_dir`, plus its manifest.

    With check, each COG must pass validate_cog, for lossless profiles (masks always) match
    its source pixel for pixel, and be decoded by ocog's engine exactly as GDAL reads it;
    a failure raises OcogError naming the file.
    """
    out_dir = Path(out_dir)
    if manifest.root is not None and out_dir.resolve() == Path(manifest.root).resolve():
        raise InputError(out_dir, "variant folder is the prepared dataset's own folder")
    remove_stale_temps(out_dir)
    masks = mask_profile(profile)
    rows: list[dict] = []
    with cog_writer():  # one writer process for every file
        for item in manifest.items:
            pairs = [("image", item.image, manifest.image_path(item), profile)]
            if item.mask:
                pairs.append(("mask", item.mask, manifest.mask_path(item), masks))
            for kind, rel, src, prof in pairs:
                row = _write_checked(src, out_dir / rel, prof, check)
                rows.append(dict(dataset=manifest.dataset, variant=profile.name,
                                 item=item.name, kind=kind, **row))  # fmt: skip
    variant = DatasetManifest(
        dataset=manifest.dataset,
        classes=dict(manifest.classes),
        items=list(manifest.items),
        ignore_index=manifest.ignore_index,
        notes=(manifest.notes + f" COG variant '{profile.name}': {profile}").strip(),
    )
    variant.save(out_dir)
    return variant, rows
