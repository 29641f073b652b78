"""A raster's header facts and its readers: the fast path and GDAL's fallback.

`open_raster` parses a COG header once (from byte ranges) into a `RasterSource`;
`open_rasters` opens many through a persisted `HeaderIndex`, parsing only new or rewritten
files.
`DirectReader` reads a window of a fast-path raster without a decode pool (workers);
`FallbackReader` serves layouts the fast path cannot decode (striped TIFF, JPEG,
WEBP, ...) through GDAL with one handle per thread, opened in the reading process.
Tiles for batches are fetched and decoded by `fetch.TileFetcher`.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np

from ocog_lib.cog.grid import TileGrid
from ocog_lib.cog.header_index import HeaderIndex, open_pinned, remote_version, source_key
from ocog_lib.cog.tiff_index import TiffIndex, parse_tiff
from ocog_lib.errors import InputError, UnsupportedLayout
from ocog_lib.storage import ByteSource, LocalFile, open_source

# a tile key: (file id, band plane, tile row, tile col)
TileKey = tuple[int, int, int, int]


@dataclass
class RasterSource:
    """One raster: its parsed header (None when only GDAL can read it) and byte source."""

    uri: str
    index: TiffIndex | None
    source: ByteSource | None
    height: int
    width: int
    bands: int
    dtype: np.dtype
    tile_height: int
    tile_width: int
    fallback_reason: str | None = None
    # what GDAL opens: may carry a SAS token, so never shown (not in repr either)
    gdal_uri: str | None = field(default=None, repr=False)

    @property
    def fast(self) -> bool:
        return self.index is not None

    @property
    def tile_bytes(self) -> int:
        """Decoded bytes of one full tile, all bands."""
        return self.tile_height * self.tile_width * self.bands * self.dtype.itemsize

    @property
    def grid(self) -> TileGrid:
        return TileGrid(self.height, self.width, self.tile_height, self.tile_width)

    def window_tiles(self, row: int, col: int, patch: int) -> list[tuple[int, int, int, int]]:
        """(ty, tx, tile top, tile left) of every tile a patch x patch window touches."""
        th, tw = self.tile_height, self.tile_width
        rows, cols = self.grid.tiles_for_window(row, col, patch, patch)
        return [(ty, tx, ty * th, tx * tw) for ty in rows for tx in cols]

    @property
    def remote(self) -> bool:
        return self.source is not None and not isinstance(self.source, LocalFile)

    @property
    def direct(self) -> bool:
        """Uncompressed local file: patches are copied straight out of the page cache."""
        return (
            self.index is not None
            and self.index.compression == 1
            and isinstance(self.source, LocalFile)
        )


def open_raster(uri: str) -> RasterSource:
    """Parse a raster's header once (in the parent); fall back to GDAL where needed.

    `RasterSource.uri` is safe in messages: a remote URI redacted, a local path as given
    (a file name is no secret, and `x?sig=1.tif` is a name, not a query). I/O never goes
    through it: reads use `source`, GDAL gets `gdal_uri` (the raw URI).
    """
    return _open_from(uri, open_source(uri))


def fast_raster(uri: str, src: ByteSource, idx: TiffIndex) -> RasterSource:
    """The raster of a fast-path header: one builder for a parsed and a stored header."""
    return RasterSource(
        uri=_shown(uri, src),
        index=idx,
        source=src,
        height=idx.height,
        width=idx.width,
        bands=idx.bands,
        dtype=idx.dtype.newbyteorder("="),
        tile_height=idx.tile_height,
        tile_width=idx.tile_width,
    )


def _shown(uri: str, src: ByteSource) -> str:
    return str(uri) if isinstance(src, LocalFile) else src.uri


def _open_from(uri: str, src: ByteSource) -> RasterSource:
    """`open_raster` over an opened source: parse its header, else GDAL's facts."""
    local = isinstance(src, LocalFile)
    shown = _shown(uri, src)
    try:
        idx = parse_tiff(src)
        problem = idx.fast_path_problem
    except UnsupportedLayout as exc:
        idx, problem = None, exc.cause
    if problem is None:
        return fast_raster(uri, src, idx)
    # GDAL fallback: header facts from rasterio, no handle kept open across a fork
    gdal_uri = src.path if local else getattr(src, "signed_url", str(uri))
    try:
        with _gdal_env(gdal_uri), _rasterio().open(gdal_uri) as ds:
            (bh, bw), facts = ds.block_shapes[0], (ds.height, ds.width, ds.count, ds.dtypes[0])
    except _gdal_errors() as exc:
        cause = _gdal_cause(exc, gdal_uri)
    else:
        height, width, bands, dtype = facts
        return RasterSource(
            uri=shown, gdal_uri=gdal_uri, index=None, source=None, height=height,
            width=width, bands=bands, dtype=np.dtype(dtype), tile_height=bh, tile_width=bw,
            fallback_reason=problem,
        )  # fmt: skip
    # raised here, not in the except block: GDAL's errors (the raw URI in them) must not
    # ride along as __context__
    raise InputError(shown, f"GDAL cannot read it either ({cause})")


@dataclass(frozen=True)
class IndexStats:
    """What `open_rasters` cost: headers served by the index (hits), parsed because absent
    (misses) or rewritten since stored (stale), not storable (`uncached`: GDAL fallbacks,
    objects without a strong ETag), the bytes read to parse headers (misses and stale ones;
    GDAL's own reads not counted), the version checks sent over the wire (remote hits and
    stale ones: a HEAD for S3, a 1-byte ranged GET for HTTP(S)) and the wall time,
    write-back included."""

    hits: int = 0
    misses: int = 0
    stale: int = 0
    uncached: int = 0
    header_bytes_fetched: int = 0
    probe_requests: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class _Opened:
    raster: RasterSource
    outcome: str  # "hit", "miss" or "stale"
    header_bytes: int
    probes: int
    keep: tuple | None  # (key, version, TiffIndex) to write back


def open_rasters(
    uris: list[str], index: HeaderIndex | None = None, *, threads: int | None = None
) -> tuple[list[RasterSource], IndexStats]:
    """`open_raster` for many URIs through a persisted header index (`None`: none).

    A hit builds the raster from the stored header without reading a header byte: only the
    version check runs (a stat for a local file; for a remote object one request, a HEAD for
    S3, a 1-byte ranged GET for HTTP(S): a round trip each, hence `threads`). A miss, or an
    entry of another version (the file was rewritten), parses as `open_raster` does and is
    written back in one atomic rewrite of the index at the end. GDAL fallbacks are not
    stored: their facts come from GDAL, not a TiffIndex, GDAL re-opens the file in every
    reader anyway, and their `gdal_uri` may carry a SAS token. `threads`: concurrent opens,
    by default 16 when any URI is remote, else 1 (a local open is a stat or a GIL-bound parse).
    """
    start = time.perf_counter()
    uris = [str(u) for u in uris]
    if threads is None:
        threads = 16 if any("://" in u and not u.startswith("file://") for u in uris) else 1
    if index is not None:
        len(index)  # read the file once, before any thread asks (a bad file: raised here)
    done: list[_Opened] = []
    try:
        if threads > 1 and len(uris) > 1:
            with ThreadPoolExecutor(min(threads, len(uris)), "ocog-open") as pool:
                done.extend(pool.map(lambda u: _open_indexed(u, index), uris))
        else:
            done.extend(_open_indexed(u, index) for u in uris)
    except Exception:
        if index is not None:  # keep what was parsed: the next run need not parse it again
            with contextlib.suppress(InputError, OSError):
                index.put_many(o.keep for o in done if o.keep)
        raise
    keep = [o.keep for o in done if o.keep]
    stored = index.put_many(keep) if index is not None and keep else 0
    count = Counter(o.outcome for o in done)
    stats = IndexStats(
        hits=count["hit"],
        misses=count["miss"],
        stale=count["stale"],
        uncached=len(done) - count["hit"] - stored if index is not None else 0,
        header_bytes_fetched=sum(o.header_bytes for o in done),
        probe_requests=sum(o.probes for o in done),
        seconds=time.perf_counter() - start,
    )
    return [o.raster for o in done], stats


def _open_indexed(uri: str, index: HeaderIndex | None) -> _Opened:
    """One raster: from the index when its entry's version is the file's, else parsed."""
    src, version = open_pinned(uri)
    key = source_key(src)
    stored = index.stored_version(key) if index is not None else None
    probes = 0
    if stored is not None:
        if version is None:
            version, probes = remote_version(src), 1
        idx = index.get(key, version, uri=src.uri) if version else None
        if idx is not None:
            return _Opened(fast_raster(uri, src, idx), "hit", 0, probes, None)
    before = src.stats().bytes
    raster = _open_from(uri, src)
    fetched = src.stats().bytes - before
    outcome = "miss" if stored is None else "stale"
    if index is None or not raster.fast:
        return _Opened(raster, outcome, fetched, probes, None)
    if version is None:  # free: the parse's first ranged GET told the size and ETag
        version = remote_version(src)
    keep = (key, version, raster.index) if version else None
    return _Opened(raster, outcome, fetched, probes, keep)


def _rasterio():
    import rasterio

    return rasterio


def _gdal_errors() -> tuple[type[BaseException], ...]:
    from rasterio._err import CPLE_BaseError
    from rasterio.errors import RasterioError

    return (RasterioError, CPLE_BaseError, OSError)


def _gdal_cause(exc: BaseException, gdal_uri: str) -> str:
    """GDAL's error, its chained causes too, with the URI's secrets masked."""
    from ocog_lib.secrets import redact_exception, uri_secrets

    return redact_exception(exc, uri_secrets(gdal_uri))


def _gdal_env(gdal_uri: str):
    """Remote opens skip GDAL's directory listing (sidecar files): it costs a request
    per open and sends the SAS to a URL no one asked for."""
    if "://" not in gdal_uri and not gdal_uri.startswith("/vsi"):
        return nullcontext()
    return _rasterio().Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR")


class DirectReader:
    """Uncompressed local tiles, read with pread: no decode and no tile cache.

    A patch reads only its rows of each tile it touches (the page cache holds the bytes)
    into this thread's buffer, then copies them into the batch once. pread, not a memory
    map: a mapped file truncated under the run kills the process with SIGBUS; a read of
    it is an error. The batch checks each file it read is still the one whose header was
    parsed (`verify`, after its reads, before it is handed out), so a file changed in
    place or replaced never yields garbage; once a batch, not once a read (a path lookup
    each read cost 8-12% of the direct path and serialised its threads, 2026-12-04).
    """

    def __init__(self, rasters: list[RasterSource]):
        self.rasters = rasters
        self._local = threading.local()

    def _buffer(self, n: int) -> np.ndarray:
        buf = getattr(self._local, "buf", None)
        if buf is None or len(buf) < n:
            buf = self._local.buf = np.empty(max(n, 1 << 20), np.uint8)
        return buf[:n]

    def tile_rows(self, fid: int, plane: int, ty: int, tx: int, rows: slice) -> np.ndarray | None:
        """(len(rows), tw, samples): those rows of one stored tile (None when sparse). The
        array lives in this thread's buffer: copy it out before this thread's next call."""
        r = self.rasters[fid]
        idx = r.index
        off, n = idx.tile_entry(0, plane, ty, tx)
        if n == 0:
            return None
        spp = idx.bands if idx.planar == 1 else 1
        stride = idx.tile_width * spp * idx.dtype.itemsize
        if n < idx.tile_height * stride:
            need = idx.tile_height * stride
            raise InputError(r.uri, f"uncompressed tile ({ty},{tx}) holds {n} bytes, needs {need}")
        buf = self._buffer((rows.stop - rows.start) * stride)
        r.source.read_into(buf, off + rows.start * stride, verify=False)
        return buf.view(idx.dtype).reshape(-1, idx.tile_width, spp)

    def verify(self, fid: int) -> None:
        """Raise an InputError naming raster `fid` if its file changed since it was opened
        (what `tile_rows` read since may be another file's bytes)."""
        self.rasters[fid].source.verify()

    def close(self) -> None:
        self._local = threading.local()


class FallbackReader:
    """GDAL windowed reads for layouts the fast path can't decode; one handle per thread.

    A failed read is an InputError naming the file (so on_error="skip" covers it), its
    cause redacted and no GDAL error chained: those quote the raw URI."""

    def __init__(self, rasters: list[RasterSource]):
        self.rasters = rasters
        self._local = threading.local()

    def _handles(self) -> dict:
        handles = getattr(self._local, "handles", None)
        if handles is None or getattr(self._local, "pid", None) != os.getpid():
            handles = self._local.handles = {}
            self._local.pid = os.getpid()
        return handles

    def read(self, fid: int, row: int, col: int, size: int, bands: list[int]) -> np.ndarray:
        from rasterio.windows import Window

        r = self.rasters[fid]
        uri = r.gdal_uri or r.uri
        handles = self._handles()
        try:
            ds = handles.get(fid)
            if ds is None:
                with _gdal_env(uri):
                    ds = handles[fid] = _rasterio().open(uri)
            return ds.read([b + 1 for b in bands], window=Window(col, row, size, size))
        except _gdal_errors() as exc:
            cause = _gdal_cause(exc, uri)
        bad = handles.pop(fid, None)  # reopened by the next read: GDAL may retry then
        if bad is not None:
            bad.close()
        raise InputError(r.uri, f"GDAL cannot read window {row},{col} ({cause})")
