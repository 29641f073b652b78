"""Writing COG variants with GDAL's COG driver.

GDAL writes in a child process (see _Writer) into a folder of the write's own beside the
file, renamed into place when done: Ctrl-C stops a write at once and leaves nothing, and
what a killed write left is removed by the next write of that variant.
"""

from __future__ import annotations

import contextlib
import contextvars
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

from ocog_lib.cog.profiles import (
    LERC,
    PREDICTOR_OK,
    CogProfile,
    mask_profile,
    profile_from_spec,
    validate_profile,
)
from ocog_lib.cog.validate import GDAL_ERRORS, check_lossless, first_mismatch, validate_cog
from ocog_lib.data.lineage import CONTENT_NAME, write_folder_manifest
from ocog_lib.data.locate import variant_written
from ocog_lib.data.manifest import MANIFEST_NAME, DatasetManifest
from ocog_lib.env import exact_env
from ocog_lib.errors import InputError, OcogError
from ocog_lib.settings import Settings

# GDAL's default block cache (5% of RAM) only inflates RSS when writing a 1 GiB scene;
# 256 MiB writes as fast (measured on the 8192 px bench scenes, 2 cores)
WRITE_CACHE_BYTES = 256 * 1024 * 1024
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
                [sys.executable, "-P", "-c", "from ocog_lib.cog.write import _writer_loop; "
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
    """Every image and mask of a prepared dataset as COGs under `out_dir`, plus its
    manifest.json and, last, its content manifest (data.lineage).

    With check, each COG must pass validate_cog, for lossless profiles (masks always) match
    its source pixel for pixel, and be decoded by ocog's engine exactly as GDAL reads it;
    a failure raises OcogError naming the file.
    """
    out_dir = Path(out_dir)
    if manifest.root is not None and out_dir.resolve() == Path(manifest.root).resolve():
        raise InputError(out_dir, "variant folder is the prepared dataset's own folder")
    remove_stale_temps(out_dir)
    for marker in (MANIFEST_NAME, CONTENT_NAME):  # a rewrite is unwritten until it ends
        (out_dir / marker).unlink(missing_ok=True)
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
    content = write_folder_manifest(out_dir)  # the hash every measurement of it names
    return variant, [{**r, "content_hash": content.content_hash} for r in rows]


def ensure_variant(dataset: str, spec: str, settings: Settings, *, write: bool = True) -> str:
    """The variant folder of a custom profile spec, written from the prepared dataset
    when missing. Several processes may race: each writes to its own
    temporary folder and the first rename wins."""
    profile = profile_from_spec(spec)
    folder = settings.variant_dir(dataset, profile.name)
    if variant_written(dataset, profile.name, settings):
        return profile.name
    if not write:
        raise InputError(folder, f"variant '{profile.name}' is not written (writing is off)")
    prepared = DatasetManifest.load(settings.prepared_dir(dataset))
    tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        # every item, not only the benchmark scenes: training reads the winner's scenes
        write_variant(prepared, profile, tmp, check=False)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not variant_written(dataset, profile.name, settings):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return profile.name
