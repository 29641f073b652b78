"""Classical baselines for the learned codec, on the very patches it coded.

Patches are (n, C, p, p) arrays, usually uint16 DN values. Two kinds of baseline:

- Lossless (`lossless_bytes`): the patches as the tiles of a tiled GeoTIFF, one patch one
  p x p tile, pixel-interleaved, compressed as ocog's COG variants are (profiles.py:
  ZSTD and LERC_ZSTD at GDAL's default level 9, no predictor unless asked, LERC with
  MAX_Z_ERROR=0). The bytes are the sum of the TileByteCounts, the tile payloads only:
  the TIFF header and IFD (tag tables, offsets) are left out, as a COG's grow slowly with
  the tile count and are shared by a whole file, not paid per patch.
- Lossy (`lossy_at_bpp`, `lossy_curve`): JPEG 2000 (GDAL's JP2OpenJPEG, 9/7 wavelet) or
  WEBP. The learned codec writes one stream per patch with a 21-byte header, so the
  default "jpeg2000" codes each patch as its own raw J2K codestream (CODEC=J2K, no JP2
  boxes, an empty COM marker): both sides pay per-item costs. Its headers are 112 bytes
  for 4 bands (SOC, SIZ, COD, QCD, COM, SOT, SOD, EOC), 0.875 bpp on a 32 x 32 patch,
  more than a learned stream may hold in all, so "jpeg2000-mosaic" codes all patches as
  one image of p x p JPEG 2000 tiles (one patch per tile, each still decodable alone, no
  wavelet across patches): the main header is paid once, each patch pays only its
  tile-part header (SOT + SOD, 14 bytes; at most 65535 tiles). `j2k_header_bytes` counts
  a stream's header bytes. Resolutions are set so the coarsest level is >= 8 px (GDAL's
  default gives a 32 px patch no wavelet level at all). The rate is every byte written,
  as compress.metrics counts it.

Stretch (on by default; `stretch=False` codes what the codec takes as it is, labelled
"<codec> direct"): every band is mapped affinely from its [min, max] over the set onto
the coder's range, 0..65535 for JPEG 2000 and 0..255 for WEBP, and back after decoding
(rounded and clipped for integer data). JPEG 2000 level-shifts samples by 2^(bits-1), so
uint16 DN values near 3000-8000 code a large DC offset: on the test data the direct
uint16 coding lost 4-7 dB below 1.5 bpp and ~1-2 dB higher up. For integer bands
spanning fewer values than the coder's range the stretch is an expansion, exactly
undone; otherwise (float data, uint16 into WEBP's 8 bits) its error counts in the
PSNR/SSIM. Its side information, two values per band (the dtype's size each, float64
for float data), is counted once for the set, as the learned codec's per-band
normalisation lives with the model, not in each stream. WEBP takes 8-bit RGB only: the
bands go three to an image, the last repeating its last band (4 bands -> [0, 1, 2],
[3, 3, 3]), each image its own WEBP file.

Quality is found by bisection on the codec's knob (JPEG 2000 QUALITY, percent of the raw
size, on a log scale; WEBP QUALITY 0-100) for the highest rate not above the target;
PSNR and SSIM are on the original scale (DN for integers) with the caller's peak.
"""

from __future__ import annotations

import contextlib
import io
import math
import struct
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from ocog_lib.compress.metrics import bits_per_pixel, psnr, ssim
from ocog_lib.errors import InputError

LOSSLESS = ("ZSTD", "LERC_ZSTD", "DEFLATE")
CODECS = ("jpeg2000", "jpeg2000-mosaic", "webp")
TIFF_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")
JP2_DTYPES = ("uint8", "uint16", "int16")  # what JPEG 2000 may code unstretched
DEFAULT_QUALITIES = {
    "jpeg2000": (1.5, 2, 3, 4, 6, 8, 12, 16, 25),  # percent of the raw size
    "jpeg2000-mosaic": (0.5, 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 25),
    "webp": (5, 10, 20, 30, 50, 70, 80, 90, 95),
}
QUALITY_RANGE = {"jpeg2000": (0.05, 100.0), "jpeg2000-mosaic": (0.05, 100.0),
                 "webp": (0.0, 100.0)}  # fmt: skip
MAX_J2K_TILES = 65535  # the SOT marker's 16-bit tile index
SEARCH_STEPS = 10  # log-bisection over 0.05..100: the rate within ~1%


@dataclass(frozen=True)
class LossyPoint:
    codec: str
    quality: float
    bpp: float
    psnr_db: float
    ssim: float


def _check_patches(raw: np.ndarray) -> np.ndarray:
    raw = np.asarray(raw)
    if raw.ndim != 4 or raw.shape[2] != raw.shape[3] or 0 in raw.shape:
        raise InputError(f"patches of shape {raw.shape}", "need (n, C, p, p), none empty")
    if raw.dtype.name not in TIFF_DTYPES:
        raise InputError(f"patches of dtype {raw.dtype}", f"need one of {TIFF_DTYPES}")
    return raw


def _strip(raw: np.ndarray) -> np.ndarray:
    """(n, C, p, p) -> (C, p, n p): the patches side by side, patch i in tile column i."""
    n, c, p, _ = raw.shape
    return np.ascontiguousarray(raw.transpose(1, 2, 0, 3).reshape(c, p, n * p))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Patches have no georeferencing, which rasterio warns about on every open."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        yield


def _write(img: np.ndarray, driver: str, **opts) -> bytes:
    """One (C, H, W) image as a file of `driver`, in memory (nothing left on disk).
    Tiles are rasterio's lowercase `blockxsize`/`blockysize` (it drops uppercase ones)."""
    c, h, w = img.shape
    with _quiet(), MemoryFile() as mf:
        with mf.open(driver=driver, width=w, height=h, count=c, dtype=img.dtype.name,
                     **opts) as ds:  # fmt: skip
            ds.write(img)
        return mf.read()


def _read(data: bytes) -> np.ndarray:
    with _quiet(), rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"), MemoryFile(data) as mf, \
            mf.open() as ds:  # OpenJPEG decodes tiles in parallel
        return ds.read()


def lossless_tiff(raw: np.ndarray, compress: str, predictor: int | None = None) -> bytes:
    """The patches as a tiled GeoTIFF, one p x p tile each, as ocog's variants compress."""
    raw = _check_patches(raw)
    comp = str(compress).upper()
    if comp not in LOSSLESS:
        raise InputError(f"compression {compress!r}", f"lossless baselines: {LOSSLESS}")
    p = raw.shape[2]
    if p % 16:
        raise InputError(f"patch size {p}", "TIFF tiles need a multiple of 16")
    if predictor not in (None, 1) and (predictor not in (2, 3) or comp == "LERC_ZSTD"):
        raise InputError(f"predictor {predictor}", "1, 2 or 3 (2, 3 with ZSTD or DEFLATE)")
    opts = dict(COMPRESS=comp, tiled=True, blockxsize=p, blockysize=p, INTERLEAVE="PIXEL",
                NUM_THREADS=1)  # fmt: skip
    if comp == "LERC_ZSTD":
        opts["MAX_Z_ERROR"] = 0
    else:
        opts["PREDICTOR"] = predictor or 1
    return _write(_strip(raw), "GTiff", **opts)


def lossless_bytes(raw: np.ndarray, compress: str, predictor: int | None = None) -> int:
    """Sum of the TileByteCounts of `lossless_tiff`: tile payloads, header excluded."""
    data = lossless_tiff(raw, compress, predictor)
    with _quiet(), MemoryFile(data) as mf, mf.open() as ds:
        return sum(ds.block_size(1, 0, j) for j in range(raw.shape[0]))


def j2k_header_bytes(stream: bytes) -> int:
    """Bytes of a J2K codestream that are marker segments, not coded data (SOC, main
    header, every tile-part header with its SOD, EOC)."""
    if stream[:2] != b"\xff\x4f":
        raise InputError("stream", "not a J2K codestream (no SOC marker)")
    i, head = 2, 2
    while i + 2 <= len(stream):
        if stream[i : i + 2] == b"\xff\xd9":  # EOC
            return head + 2
        marker, length = struct.unpack(">HH", stream[i : i + 4])
        if marker == 0xFF90:  # SOT: Psot is the whole tile-part, header included
            psot = struct.unpack(">I", stream[i + 6 : i + 10])[0]
            j, head = i + 2 + length, head + 2 + length
            while stream[j : j + 2] != b"\xff\x93":  # tile-part header up to SOD
                seg = 2 + struct.unpack(">H", stream[j + 2 : j + 4])[0]
                j, head = j + seg, head + seg
            head += 2
            i = i + psot if psot else len(stream)
            continue
        i, head = i + 2 + length, head + 2 + length
    return head


@dataclass(frozen=True, eq=False)
class _Scaling:
    """Per-band affine map raw -> coded integers; identity when `lo` is None."""

    lo: np.ndarray | None
    hi: np.ndarray | None
    top: int  # the coded range is 0..top
    side_bytes: int

    def forward(self, raw: np.ndarray, dtype: str) -> np.ndarray:
        if self.lo is None:
            return raw
        x = (raw.astype(np.float64) - self.lo) / (self.hi - self.lo) * self.top
        return np.clip(np.round(x), 0, self.top).astype(dtype)

    def inverse(self, coded: np.ndarray, like: np.ndarray) -> np.ndarray:
        if self.lo is None:
            return coded.astype(like.dtype)
        x = coded.astype(np.float64) / self.top * (self.hi - self.lo) + self.lo
        if like.dtype.kind == "f":
            return x.astype(like.dtype)
        info = np.iinfo(like.dtype)
        return np.clip(np.round(x), info.min, info.max).astype(like.dtype)


def _scaling(raw: np.ndarray, codec: str, stretch: bool) -> _Scaling:
    """The per-band stretch onto the codec's range, or none where `stretch` is off and
    the codec takes the dtype as it is (see the module docstring)."""
    webp = codec == "webp"
    if not stretch and raw.dtype.name in (("uint8",) if webp else JP2_DTYPES):
        return _Scaling(None, None, 0, 0)
    lo = raw.min(axis=(0, 2, 3)).astype(np.float64)[None, :, None, None]
    hi = raw.max(axis=(0, 2, 3)).astype(np.float64)[None, :, None, None]
    hi = np.where(hi > lo, hi, lo + 1)
    per_value = 8 if raw.dtype.kind == "f" else raw.dtype.itemsize
    return _Scaling(lo, hi, 255 if webp else 65535, 2 * per_value * raw.shape[1])


def _resolutions(p: int) -> int:
    """Wavelet levels + 1 so the coarsest resolution is at least 8 px (32 px -> 3)."""
    return max(1, int(math.log2(max(p, 8) / 8)) + 1)


def _jp2_opts(quality: float, p: int) -> dict:
    return dict(CODEC="J2K", QUALITY=f"{quality:.4f}", RESOLUTIONS=_resolutions(p),
                COMMENT="", NUM_THREADS=1)  # fmt: skip


def _enc_jp2(coded: np.ndarray, quality: float) -> list[bytes]:
    return [_write(patch, "JP2OpenJPEG", **_jp2_opts(quality, coded.shape[2]))
            for patch in coded]  # fmt: skip


def _dec_jp2(streams: Sequence[bytes], shape: tuple) -> np.ndarray:
    return np.stack([_read(s) for s in streams])


def _enc_mosaic(coded: np.ndarray, quality: float) -> list[bytes]:
    n, _, p, _ = coded.shape
    if n > MAX_J2K_TILES:
        raise InputError(f"{n} patches", f"a J2K image holds at most {MAX_J2K_TILES} tiles")
    opts = _jp2_opts(quality, p) | dict(tiled=True, blockxsize=p, blockysize=p)
    return [_write(_strip(coded), "JP2OpenJPEG", **opts)]


def _dec_mosaic(streams: Sequence[bytes], shape: tuple) -> np.ndarray:
    n, c, p, _ = shape
    return _read(streams[0]).reshape(c, p, n, p).transpose(2, 0, 1, 3)


def _webp_groups(c: int) -> list[list[int]]:
    """Bands three to an RGB image, the last padded with its last band."""
    groups = [list(range(i, min(i + 3, c))) for i in range(0, c, 3)]
    return [g + [g[-1]] * (3 - len(g)) for g in groups]


def _enc_webp(coded: np.ndarray, quality: float) -> list[bytes]:
    groups = _webp_groups(coded.shape[1])
    return [_write(np.ascontiguousarray(patch[g]), "WEBP", QUALITY=f"{quality:.3f}")
            for patch in coded for g in groups]  # fmt: skip


def _dec_webp(streams: Sequence[bytes], shape: tuple) -> np.ndarray:
    n, c, p, _ = shape
    groups = _webp_groups(c)
    out = np.empty(shape, np.uint8)
    for k, s in enumerate(streams):
        i, g = divmod(k, len(groups))
        img = _read(s)
        for slot, band in enumerate(groups[g][: min(3, c - 3 * g)]):
            out[i, band] = img[slot]
    return out


_CODERS: dict[str, tuple[Callable, Callable, str]] = {
    "jpeg2000": (_enc_jp2, _dec_jp2, "uint16"),
    "jpeg2000-mosaic": (_enc_mosaic, _dec_mosaic, "uint16"),
    "webp": (_enc_webp, _dec_webp, "uint8"),
}


@dataclass(frozen=True, eq=False)
class _Job:
    """One codec on one set of patches, ready to code at any quality."""

    raw: np.ndarray
    name: str  # the points' label: the codec, "direct" appended when nothing was stretched
    codec: str
    peak: float
    scaling: _Scaling
    coded: np.ndarray

    def bpp(self, streams: Sequence[bytes]) -> float:
        n, _, p, _ = self.raw.shape
        return bits_per_pixel(list(streams) + [bytes(self.scaling.side_bytes)], n * p * p)

    def encode(self, quality: float) -> list[bytes]:
        return _CODERS[self.codec][0](self.coded, quality)

    def point(self, quality: float, streams: Sequence[bytes]) -> LossyPoint:
        decoded = _CODERS[self.codec][1](streams, self.coded.shape)
        test = self.scaling.inverse(decoded, self.raw)
        rate = self.bpp(streams)
        db, sim = psnr(self.raw, test, self.peak), ssim(self.raw, test, self.peak)
        return LossyPoint(self.name, float(quality), rate, db, sim)


def _job(raw: np.ndarray, codec: str, peak: float, stretch: bool) -> _Job:
    raw = _check_patches(raw)
    if codec not in CODECS:
        raise InputError(f"lossy codec {codec!r}", f"valid: {', '.join(CODECS)}")
    if not peak > 0:
        raise InputError(f"peak {peak}", "must be positive")
    scaling = _scaling(raw, codec, stretch)
    dtype = raw.dtype.name if scaling.lo is None else _CODERS[codec][2]
    name = codec if scaling.lo is not None else f"{codec} direct"
    return _Job(raw, name, codec, float(peak), scaling, scaling.forward(raw, dtype))


def lossy_at_bpp(raw: np.ndarray, target_bpp: float, peak: float, codec: str = "jpeg2000",
                 stretch: bool = True) -> LossyPoint:  # fmt: skip
    """The highest-rate point of `codec` not above `target_bpp` (bisection on quality),
    per patch by default; InputError when even the lowest quality is above it."""
    job = _job(raw, codec, peak, stretch)
    if not target_bpp > 0:
        raise InputError(f"target {target_bpp} bpp", "must be positive")
    lo, hi = QUALITY_RANGE[codec]
    log = codec.startswith("jpeg2000")  # JPEG 2000 QUALITY is a rate: bisect its log
    best: tuple[float, list[bytes]] | None = None
    for _ in range(SEARCH_STEPS):
        mid = math.sqrt(lo * hi) if log else (lo + hi) / 2
        streams = job.encode(mid)
        if job.bpp(streams) <= target_bpp:
            best, lo = (mid, streams), mid
        else:
            hi = mid
    if best is None:
        floor = job.bpp(job.encode(QUALITY_RANGE[codec][0]))
        hint = "" if codec == "jpeg2000-mosaic" else " (headers); jpeg2000-mosaic needs less"
        why = f"{codec} needs at least {floor:.3f} bpp on these patches{hint}"
        raise InputError(f"target {target_bpp} bpp", why)
    return job.point(*best)


def lossy_curve(raw: np.ndarray, peak: float, codec: str = "jpeg2000",
                qualities: Sequence[float] | None = None,
                stretch: bool = True) -> list[LossyPoint]:  # fmt: skip
    """Rate-distortion points of `codec` at `qualities` (its defaults if None), by bpp."""
    job = _job(raw, codec, peak, stretch)
    points = {}
    for q in qualities if qualities is not None else DEFAULT_QUALITIES[codec]:
        pt = job.point(q, job.encode(q))
        points.setdefault((pt.bpp, pt.psnr_db), pt)  # a rate floor repeats a point
    return sorted(points.values(), key=lambda pt: (pt.bpp, pt.quality))


def rd_png(codec_points: list[tuple[str, float, float]], curves: dict[str, list[LossyPoint]],
           title: str) -> bytes:  # fmt: skip
    """PNG of PSNR against bpp: (label, bpp, psnr) markers, one line per baseline curve."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FormatStrFormatter

    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, pts in curves.items():
        pts = [p for p in pts if math.isfinite(p.psnr_db)]
        ax.plot([p.bpp for p in pts], [p.psnr_db for p in pts], marker=".", label=name)
    for k, (label, bpp, db) in enumerate(codec_points):
        if math.isfinite(db):  # black markers: the lines take the colour cycle
            ax.scatter([bpp], [db], marker="*DPXs^v"[k % 7], s=70, color="black", zorder=3,
                       label=label)  # fmt: skip
            ax.annotate(label, (bpp, db), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xscale("log", base=2)  # baselines reach 16+ bpp, learned points sit below 2
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.set_xlabel("bits per pixel (all bands; log scale)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if curves or codec_points:
        ax.legend(fontsize=7, loc="lower right")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()
