"""Parsed COG headers: where every tile lives and how to decode it.

Parsed once per file (a few KiB of header, fetched as byte ranges so the same code
serves local and remote files), then shared with every worker by pickling: a worker
never re-opens or re-parses a file. Only what the engine needs is kept: image size,
tile grid, tile offsets and byte counts, dtype, compression, predictor, planar layout,
nodata, and the overview levels.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

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


@dataclass(frozen=True)
class Level:
    """One resolution level (full resolution or an overview) of a tiled TIFF."""

    width: int
    height: int
    tile_width: int
    tile_height: int
    offsets: np.ndarray  # uint64, one per tile (per band and tile when planar=2)
    byte_counts: np.ndarray  # uint64, same shape

    @property
    def tiles_across(self) -> int:
        return -(-self.width // self.tile_width)

    @property
    def tiles_down(self) -> int:
        return -(-self.height // self.tile_height)


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

    def __init__(self, source: ByteSource, size: int):
        self.source = source
        self.size = size
        self.head = source.read(0, min(HEADER_FETCH, size))

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


def parse_tiff(source: ByteSource) -> TiffIndex:
    """Parse the header of a tiled (Cloud-Optimized) GeoTIFF from byte ranges."""
    uri = source.uri
    size = source.size()
    if size < 16:
        raise InputError(uri, f"not a TIFF: only {size} bytes")
    r = _Reader(source, size)
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
        if len(offsets) != lv.tiles_across * lv.tiles_down * planes or len(counts) != len(offsets):
            raise InputError(uri, "corrupt TIFF: tile offset count does not match the tile grid")
        if len(offsets) and int((offsets + counts).max()) > size:
            raise InputError(
                uri, f"truncated TIFF: tiles point past the end of the {size}-byte file"
            )
        levels.append(lv)

    return TiffIndex(
        uri=uri,
        size=size,
        byteorder=bo,
        dtype=dtype.newbyteorder(bo),
        bands=int(bands),
        compression=int(main.get(259, (1,))[0]),
        predictor=int(main.get(317, (1,))[0]),
        planar=int(planar),
        photometric=int(main.get(262, (1,))[0]),
        nodata=nodata,
        levels=tuple(levels),
        lerc_params=tuple(int(v) for v in main.get(50674, ())),
        jpeg_tables=bytes(main.get(347, (b"",))[0]) if 347 in main and main[347] else b"",
    )


def read_index(uri: str) -> TiffIndex:
    """Open a URI and parse its header (once; pass the result to workers)."""
    return parse_tiff(open_source(uri))
