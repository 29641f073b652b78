"""Parsed COG headers: where every tile lives and how to decode it.

Parsed once per file (a few KiB of header, fetched as byte ranges so the same code
serves local and remote files), then shared with every worker by pickling: a worker
never re-opens or re-parses a file. Only what the engine needs is kept: image size,
tile grid, tile offsets and byte counts, dtype, compression, predictor, planar layout,
nodata, the overview levels, and the georeferencing (CRS and transform, to check that a
mask lines up with its image).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from ocog_lib.cog.grid import TileGrid
from ocog_lib.errors import InputError, UnsupportedLayout
from ocog_lib.storage import ByteSource, open_source

HEADER_FETCH = 64 * 1024

# TIFF field types -> (struct code, size)
_TYPES = {
    1: ("B", 1),
    2: ("s", 1),
    3: ("H", 2),
    4: ("I", 4),
    5: ("II", 8),
    6: ("b", 1),
    7: ("B", 1),
    8: ("h", 2),
    9: ("i", 4),
    10: ("ii", 8),
    11: ("f", 4),
    12: ("d", 8),
    16: ("Q", 8),
    17: ("q", 8),
    18: ("Q", 8),
}

COMPRESSION_NAMES = {
    1: "NONE",
    5: "LZW",
    7: "JPEG",
    8: "DEFLATE",
    32946: "DEFLATE",
    32773: "PACKBITS",
    34887: "LERC",
    50000: "ZSTD",
    50001: "WEBP",
    34925: "LZMA",
}
# compression codes the fast path decodes itself
FAST_COMPRESSIONS = {1, 5, 8, 32946, 32773, 34887, 50000}
_SAMPLE_FORMATS = {1: "u", 2: "i", 3: "f"}


# ---- georeferencing ------------------------------------------------------------------
# GeoTIFF tags and GeoKeys (GeoTIFF 1.1): enough to tell whether two rasters line up
_PIXEL_SCALE, _TIEPOINT, _TRANSFORMATION = 33550, 33922, 34264
_GEOKEYS, _GEO_DOUBLES, _GEO_ASCII = 34735, 34736, 34737
_RASTER_TYPE, _GEOGRAPHIC, _PROJECTED, _VERTICAL = 1025, 2048, 3072, 4096
_CITATIONS = {1026, 2049, 3073, 4097}  # free text: two writers word the same CRS differently
_USER_DEFINED = 32767


@dataclass(frozen=True)
class Georef:
    """Where a raster lies: its CRS as stored and its pixel-to-CRS transform.

    `crs` is (("EPSG", code),) when the file names an EPSG CRS, else its GeoKeys as
    (key, value) pairs without the citations; () when it has none. `transform` is
    (a, b, c, d, e, f) as in rasterio's Affine (pixel corner, as GDAL reports it).
    """

    crs: tuple = ()
    transform: tuple[float, ...] | None = None
    tiepoints: tuple[float, ...] = ()  # ground control points, when there is no transform

    @property
    def crs_name(self) -> str:
        if not self.crs:
            return "none"
        if self.crs[0][0] == "EPSG":
            return "+".join(f"EPSG:{code}" for _, code in self.crs)
        return "GeoKeys " + ", ".join(f"{k}={v}" for k, v in self.crs)

    def difference(self, other: Georef, mine: str, theirs: str) -> str | None:
        """What differs from `other` (None: they line up); `mine`/`theirs` label the two."""
        if not _same_crs(self.crs, other.crs):
            return f"CRS {self.crs_name} ({mine}) vs {other.crs_name} ({theirs})"
        if self.tiepoints != other.tiepoints:
            return f"ground control points differ ({mine} vs {theirs})"
        a, b = self.transform, other.transform
        if a is None and b is None:
            return None
        if a is None or b is None or not _same_transform(a, b):
            return f"transform {_fmt(a)} ({mine}) vs {_fmt(b)} ({theirs}){_shift(a, b, theirs)}"
        return None


@dataclass(frozen=True)
class Level(TileGrid):
    """One resolution level (full resolution or an overview) of a tiled TIFF: its tile grid
    and where each tile is stored."""

    offsets: np.ndarray  # uint64, one per tile (per band and tile when planar=2)
    byte_counts: np.ndarray  # uint64, same shape


@dataclass(frozen=True)
class TiffIndex:
    uri: str
    size: int
    byteorder: str  # "<" or ">"
    dtype: np.dtype
    bands: int
    compression: int
    predictor: int
    planar: int  # 1 = pixel interleave (chunky), 2 = band interleave (planar)
    photometric: int
    nodata: float | None
    levels: tuple[Level, ...]
    lerc_params: tuple[int, ...] = ()
    jpeg_tables: bytes = b""
    extra: dict = field(default_factory=dict)
    georef: Georef = field(default_factory=Georef)  # CRS and transform

    @property
    def grid(self) -> TileGrid:
        """The full-resolution tile grid."""
        return self.levels[0]

    @property
    def width(self) -> int:
        return self.levels[0].width

    @property
    def height(self) -> int:
        return self.levels[0].height

    @property
    def tile_width(self) -> int:
        return self.levels[0].tile_width

    @property
    def tile_height(self) -> int:
        return self.levels[0].tile_height

    @property
    def compression_name(self) -> str:
        return COMPRESSION_NAMES.get(self.compression, str(self.compression))

    @property
    def decoded_tile_bytes(self) -> int:
        return self.tile_width * self.tile_height * self.bands * self.dtype.itemsize

    @property
    def fast_path(self) -> bool:
        """True when ocog's own decoder can read this file; else GDAL takes over."""
        return self.fast_path_problem is None

    @property
    def fast_path_problem(self) -> str | None:
        if self.compression not in FAST_COMPRESSIONS:
            return f"compression {self.compression_name} is not decoded by the fast path"
        if self.predictor not in (1, 2, 3):
            return f"predictor {self.predictor} is not supported"
        if self.photometric == 6:
            return "YCbCr photometric is not supported by the fast path"
        return None

    def tile_entry(self, level: int, band_plane: int, ty: int, tx: int) -> tuple[int, int]:
        """Offset and byte count of one tile (band_plane is 0 unless planar=2)."""
        lv = self.levels[level]
        i = (band_plane * lv.tiles_down + ty) * lv.tiles_across + tx
        return int(lv.offsets[i]), int(lv.byte_counts[i])


class _Reader:
    """Serves header bytes from one prefetched block, fetching more only when needed."""

    def __init__(self, source: ByteSource):
        self.source = source
        self.head, self.size = source.head(HEADER_FETCH)

    def bytes(self, offset: int, length: int) -> bytes:
        if offset + length > self.size:
            raise InputError(self.source.uri, "truncated TIFF: a header field points past the end")
        if offset + length <= len(self.head):
            return self.head[offset : offset + length]
        return self.source.read(offset, length)


def _parse_ifd(r: _Reader, bo: str, big: bool, offset: int) -> tuple[dict[int, tuple], int]:
    if big:
        (n,) = struct.unpack(bo + "Q", r.bytes(offset, 8))
        entry_size, head, count_fmt, slot = 20, 8, "Q", 8
    else:
        (n,) = struct.unpack(bo + "H", r.bytes(offset, 2))
        entry_size, head, count_fmt, slot = 12, 2, "I", 4
    if n > 4096:
        raise InputError(r.source.uri, f"corrupt TIFF: IFD at {offset} claims {n} entries")
    raw = r.bytes(offset + head, n * entry_size + slot)
    tags: dict[int, tuple] = {}
    for k in range(n):
        e = raw[k * entry_size : (k + 1) * entry_size]
        tag, typ = struct.unpack(bo + "HH", e[:4])
        (count,) = struct.unpack(bo + count_fmt, e[4 : 4 + slot])
        if typ not in _TYPES:
            continue
        code, size = _TYPES[typ]
        nbytes = count * size
        if nbytes <= slot:
            data = e[4 + slot : 4 + slot + nbytes]
        else:
            (ptr,) = struct.unpack(bo + ("Q" if big else "I"), e[4 + slot : 4 + 2 * slot])
            data = r.bytes(ptr, nbytes)
        if typ == 2:
            tags[tag] = (data.rstrip(b"\0").decode("latin-1"),)
        elif typ in (5, 10):
            vals = struct.unpack(bo + code[0] * (2 * count), data)
            tags[tag] = tuple(
                vals[i] / vals[i + 1] if vals[i + 1] else 0.0 for i in range(0, len(vals), 2)
            )
        elif typ in (3, 4, 16) and count > 64:
            dt = {3: "u2", 4: "u4", 16: "u8"}[typ]
            tags[tag] = (np.frombuffer(data, dtype=bo + dt).astype(np.uint64),)
        else:
            tags[tag] = struct.unpack(bo + code * count, data)
    (next_ifd,) = struct.unpack(bo + ("Q" if big else "I"), raw[n * entry_size :])
    return tags, next_ifd


def _array(tags: dict[int, tuple], tag: int) -> np.ndarray:
    v = tags[tag]
    if len(v) == 1 and isinstance(v[0], np.ndarray):
        return v[0]
    return np.asarray(v, dtype=np.uint64)


def _byte_order(r: _Reader, uri: str) -> tuple[str, bool, int]:
    """(byte order, BigTIFF, offset of the first IFD) from the file's first bytes."""
    magic = r.head[:4]
    if magic[:2] == b"II":
        bo = "<"
    elif magic[:2] == b"MM":
        bo = ">"
    else:
        raise InputError(uri, "not a TIFF: missing II/MM byte-order mark")
    (version,) = struct.unpack(bo + "H", magic[2:4])
    if version == 42:
        big = False
        (first,) = struct.unpack(bo + "I", r.head[4:8])
    elif version == 43:
        big = True
        (first,) = struct.unpack(bo + "Q", r.head[8:16])
    else:
        raise InputError(uri, f"not a TIFF: version {version}")
    return bo, big, first


def _levels(ifds: list[dict[int, tuple]], bands: int, bits: tuple, planar: int, size: int,
            uri: str) -> tuple[Level, ...]:
    """The tiled image levels among the IFDs (full resolution first, then overviews)."""
    levels = []
    for tags in ifds:
        subfile = tags.get(254, (0,))[0]
        if subfile & 4:  # transparency mask, not an image level
            continue
        if 322 not in tags or 324 not in tags:
            continue
        if tags.get(277, (1,))[0] != bands or tags.get(258, bits) != bits:
            continue
        offsets, counts = _array(tags, 324), _array(tags, 325)
        lv = Level(
            width=int(tags[256][0]),
            height=int(tags[257][0]),
            tile_width=int(tags[322][0]),
            tile_height=int(tags[323][0]),
            offsets=offsets,
            byte_counts=counts,
        )
        planes = bands if planar == 2 else 1
        if len(offsets) != lv.tile_count * planes or len(counts) != len(offsets):
            raise InputError(uri, "corrupt TIFF: tile offset count does not match the tile grid")
        if len(offsets) and int((offsets + counts).max()) > size:
            raise InputError(
                uri, f"truncated TIFF: tiles point past the end of the {size}-byte file"
            )
        levels.append(lv)
    return tuple(levels)


def parse_tiff(source: ByteSource) -> TiffIndex:
    """Parse the header of a tiled (Cloud-Optimized) GeoTIFF from byte ranges."""
    uri = source.uri
    r = _Reader(source)
    if r.size < 16:
        raise InputError(uri, f"not a TIFF: only {r.size} bytes")
    bo, big, first = _byte_order(r, uri)
    ifds: list[dict[int, tuple]] = []
    offset, seen = first, set()
    while offset and offset not in seen and len(ifds) < 64:
        seen.add(offset)
        tags, offset = _parse_ifd(r, bo, big, offset)
        ifds.append(tags)
    if not ifds:
        raise InputError(uri, "not a TIFF: no image directory")

    main = ifds[0]
    if 322 not in main or 324 not in main:
        raise UnsupportedLayout(uri, "striped TIFF (no tiles): the fast path needs a tiled COG")
    bits = main.get(258, (8,))
    if len(set(bits)) != 1 or bits[0] not in (8, 16, 32, 64):
        raise UnsupportedLayout(uri, f"bits per sample {bits} not supported by the fast path")
    fmt = _SAMPLE_FORMATS.get(main.get(339, (1,))[0])
    if fmt is None:
        raise UnsupportedLayout(uri, f"sample format {main.get(339)} not supported")
    dtype = np.dtype(f"{fmt}{bits[0] // 8}")
    bands = main.get(277, (1,))[0]
    planar = main.get(284, (1,))[0]
    nodata = None
    if 42113 in main:
        try:
            nodata = float(main[42113][0])
        except ValueError:
            nodata = None

    return TiffIndex(
        uri=uri,
        size=r.size,
        byteorder=bo,
        dtype=dtype.newbyteorder(bo),
        bands=int(bands),
        compression=int(main.get(259, (1,))[0]),
        predictor=int(main.get(317, (1,))[0]),
        planar=int(planar),
        photometric=int(main.get(262, (1,))[0]),
        nodata=nodata,
        levels=_levels(ifds, bands, bits, planar, r.size, uri),
        lerc_params=tuple(int(v) for v in main.get(50674, ())),
        jpeg_tables=bytes(main.get(347, (b"",))[0]) if 347 in main and main[347] else b"",
        georef=parse_georef(main),
    )


def read_index(uri: str) -> TiffIndex:
    """Open a URI and parse its header (once; pass the result to workers)."""
    return parse_tiff(open_source(uri))


# ---- georeferencing: parsing and comparing (the `Georef` class is above) ----------------
def _same_crs(a: tuple, b: tuple) -> bool:
    """The same stored CRS: EPSG codes and GeoKeys equal, their doubles up to round-off (GDAL
    writes an ellipsoid's 298.257222101 as ...101004 on one path and not on another)."""
    if len(a) != len(b):
        return False
    for (ka, va), (kb, vb) in zip(a, b, strict=True):
        if ka != kb or type(va) is not type(vb):
            return False
        if isinstance(va, tuple) and all(isinstance(v, float) for v in va + vb):
            if len(va) != len(vb) or not all(
                abs(x - y) <= 1e-12 * max(abs(x), abs(y)) for x, y in zip(va, vb, strict=True)
            ):
                return False
        elif va != vb:
            return False
    return True


def _same_transform(t: tuple[float, ...], u: tuple[float, ...]) -> bool:
    """Equal up to float round-off: scale/rotation to 1e-9 of the pixel size, origin to a
    millionth of a pixel (plus the last digits of a large coordinate)."""
    pixel = max(abs(v) for v in (*t[:2], *t[3:5], *u[:2], *u[3:5])) or 1.0
    for i in (0, 1, 3, 4):
        if abs(t[i] - u[i]) > 1e-9 * pixel:
            return False
    return all(abs(t[i] - u[i]) <= 1e-6 * pixel + 1e-12 * abs(t[i]) for i in (2, 5))


def _fmt(t: tuple[float, ...] | None) -> str:
    return "none" if t is None else "(" + ", ".join(f"{v:.10g}" for v in t) + ")"


def _shift(t, u, theirs: str) -> str:
    """For north-up grids of the same pixel size, the offset in pixels."""
    if t is None or u is None or t[1] or t[3] or u[1] or u[3]:
        return ""
    if abs(t[0] - u[0]) > 1e-9 * abs(t[0]) or abs(t[4] - u[4]) > 1e-9 * abs(t[4]):
        return ""
    dx, dy = (u[2] - t[2]) / t[0] + 0.0, (u[5] - t[5]) / t[4] + 0.0  # + 0.0: no -0
    return f": {theirs} shifted by {dx:+.6g} columns, {dy:+.6g} rows"


def _geokeys(tags: dict[int, tuple]) -> dict[int, object]:
    """The GeoKey directory as key -> value (ints, doubles or text)."""
    raw = tags.get(_GEOKEYS)
    if not raw:
        return {}
    d = [int(v) for v in (raw[0] if isinstance(raw[0], np.ndarray) else raw)]
    doubles = tags.get(_GEO_DOUBLES, ())
    text = tags.get(_GEO_ASCII, ("",))[0]
    keys: dict[int, object] = {}
    for i in range(4, 4 + 4 * d[3], 4):
        key, where, count, value = d[i : i + 4]
        if where == 0:
            keys[key] = value
        elif where == _GEO_DOUBLES:
            keys[key] = tuple(doubles[value : value + count])
        elif where == _GEO_ASCII:
            keys[key] = text[value : value + count].rstrip("|\0")
        else:
            keys[key] = tuple(tags.get(where, ())[value : value + count])
    return keys


def parse_georef(tags: dict[int, tuple]) -> Georef:
    """The georeferencing facts of one image directory (see `Georef`)."""
    keys = _geokeys(tags)
    crs: tuple = ()
    code = keys.get(_PROJECTED, keys.get(_GEOGRAPHIC))
    if isinstance(code, int) and code != _USER_DEFINED:
        crs = (("EPSG", code),)
        if isinstance(keys.get(_VERTICAL), int) and keys[_VERTICAL] != _USER_DEFINED:
            crs += (("EPSG", keys[_VERTICAL]),)
    elif keys:
        skip = _CITATIONS | {_RASTER_TYPE}
        crs = tuple(sorted((k, v) for k, v in keys.items() if k not in skip))
    transform = None
    tie, scale = tags.get(_TIEPOINT, ()), tags.get(_PIXEL_SCALE, ())
    if len(tags.get(_TRANSFORMATION, ())) >= 8:
        m = tags[_TRANSFORMATION]
        transform = (m[0], m[1], m[3], m[4], m[5], m[7])
    elif len(tie) >= 6 and len(scale) >= 2:
        i, j, _, x, y, _ = tie[:6]
        transform = (scale[0], 0.0, x - i * scale[0], 0.0, -scale[1], y + j * scale[1])
    if transform is not None and keys.get(_RASTER_TYPE) == 2:  # PixelIsPoint: GDAL's shift
        a, b, c, d, e, f = transform
        transform = (a, b, c - (a + b) / 2, d, e, f - (d + e) / 2)
    tiepoints = tuple(float(v) for v in tie) if transform is None else ()
    return Georef(crs, tuple(float(v) for v in transform) if transform else None, tiepoints)


def read_georef(source: ByteSource) -> Georef:
    """The georeferencing of any TIFF, tiled or not (the fast path's header parse stops
    at layouts it cannot decode; GDAL takes the same facts from the first directory)."""
    r = _Reader(source)
    bo = ">" if r.head[:2] == b"MM" else "<"
    big = struct.unpack(bo + "H", r.head[2:4])[0] == 43
    (first,) = struct.unpack_from(bo + ("Q" if big else "I"), r.head, 8 if big else 4)
    tags, _ = _parse_ifd(r, bo, big, first)
    return parse_georef(tags)
