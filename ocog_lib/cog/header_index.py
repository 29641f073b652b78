"""A persisted store of parsed COG headers, so a second run over many files parses none.

Opening 10^4 COGs costs 10^4 header reads (64 KiB each, a ranged GET when remote) before
the first batch. `HeaderIndex` keeps each parsed `TiffIndex` keyed by (URI, version), so a
later run checks the version only (`ByteSource.version()`): a `stat` for a local file, one
HEAD for an S3 object, one 1-byte ranged GET for an HTTP(S) one (its answer carries size
and ETag): still a round trip per remote object, but no header byte.
`ocog_lib.stream.rasters.open_rasters` builds the rasters from it.

Format: one DuckDB file (pyarrow, hence Parquet, is not a dependency) with three tables:
`ocog_header_index` (format name and schema number), `headers` (one row per file, every
`TiffIndex` field as a typed column; georef and extra as JSON) and `levels` (one row per
resolution level; tile offsets and byte counts as raw bytes + dtype + shape). No pickle: a
file someone hands you is data, read with external access off, every value checked
(dtypes, array sizes, tiles inside the file) before it becomes a `TiffIndex`.

Keys: a local file by its absolute path (a file name is no secret), a remote object by its
redacted URI (`ocog_lib.secrets.redact_uri`): a SAS token or presigned signature is never
written, and a URI that still differs only in non-secret query values (a presigned URL's
X-Amz-Date) is another key. Versions: a local file's inode, size and mtime_ns (the raster
built from a hit is pinned to that stat, device included, and every read checks it); a
remote object's size + ETag (+ the S3 endpoint). An object without a strong ETag is not
stored: nothing would tell its rewrite.

Writes: the whole store is rewritten to a temporary file beside it and renamed into place,
under an exclusive lock file (`<path>.lock`), after merging what other writers stored
meanwhile: readers take no lock and see the old or the new file, never a half one.
An unreadable or malformed file raises InputError naming it and the cause (it is not
rebuilt behind the user's back: delete it to rebuild it).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from ocog_lib.cog.tiff_index import Georef, Level, TiffIndex
from ocog_lib.errors import InputError
from ocog_lib.results import READ_SANDBOX
from ocog_lib.secrets import redact_uri
from ocog_lib.storage import ByteSource, LocalFile, open_source

FORMAT = "ocog-header-index"
SCHEMA = 1
LOCK_WAIT_S = 120.0
_REBUILD = "delete it to rebuild the index"

_HEADER_COLS = (
    ("key", "VARCHAR PRIMARY KEY"), ("version", "VARCHAR NOT NULL"), ("size", "UBIGINT"),
    ("byteorder", "VARCHAR"), ("dtype", "VARCHAR"), ("bands", "INTEGER"),
    ("compression", "INTEGER"), ("predictor", "INTEGER"), ("planar", "INTEGER"),
    ("photometric", "INTEGER"), ("nodata", "DOUBLE"), ("lerc_params", "BIGINT[]"),
    ("jpeg_tables", "BLOB"), ("extra", "VARCHAR"), ("georef", "VARCHAR"),
)  # fmt: skip
_LEVEL_COLS = (
    ("key", "VARCHAR NOT NULL"), ("level", "INTEGER NOT NULL"), ("height", "BIGINT"),
    ("width", "BIGINT"), ("tile_height", "BIGINT"), ("tile_width", "BIGINT"),
    ("offsets_dtype", "VARCHAR"), ("offsets_shape", "BIGINT[]"), ("offsets", "BLOB"),
    ("counts_dtype", "VARCHAR"), ("counts_shape", "BIGINT[]"), ("byte_counts", "BLOB"),
)  # fmt: skip

# one stored file: its header row and its level rows, as the columns hold them
Row = tuple[tuple, list[tuple]]


# ---- keys and versions ------------------------------------------------------------------
def open_pinned(uri: str) -> tuple[ByteSource, str | None]:
    """`open_source(uri)` and, for a local file, its version: one stat, the file pinned to
    it, so every later read (any process) fails if the file is no longer the one checked.
    A remote source's version is None here: `remote_version` asks for it."""
    src = open_source(uri)
    if not isinstance(src, LocalFile):
        return src, None
    try:
        st = os.stat(src.path)
    except OSError as exc:
        raise InputError(src.path, f"cannot stat it ({exc.strerror})") from None
    pin = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    # the identity LocalFile pins on first open and checks on every read (its unpickling
    # path): a hit then never reads a file other than the one whose version matched. The
    # version leaves the device out: hosts sharing an index number one NFS mount differently
    return LocalFile(src.path, _pinned=pin), f"file:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def remote_version(src: ByteSource) -> str | None:
    """A remote object's size + strong ETag (+ endpoint); None when it has none. Free after
    a header parse (the first ranged GET told both), else one request: a HEAD for S3, a
    1-byte ranged GET for HTTP(S)."""
    etag = src.version()
    if not etag or etag.startswith("W/"):  # a weak ETag does not promise the same bytes
        return None
    endpoint = getattr(src, "endpoint_url", None)
    where = f"@{redact_uri(endpoint)}" if endpoint else ""
    return f"{src.size()}:{etag}{where}"


def source_key(src: ByteSource) -> str:
    """What a source is stored under: a local file's absolute path, else its redacted URI."""
    if isinstance(src, LocalFile):
        return os.path.abspath(src.path)
    return redact_uri(src.uri)


# ---- the store -----------------------------------------------------------------------------
class HeaderIndex:
    """Parsed headers on disk, keyed by (URI, version); see the module docstring.

    The file is read once, on first use, and kept in memory (a few hundred bytes per
    file); `put_many` merges with what is on disk at that moment and rewrites it.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._rows: dict[str, Row] | None = None

    def __len__(self) -> int:
        return len(self._loaded())

    def __repr__(self) -> str:
        return f"HeaderIndex({str(self.path)!r})"

    def stored_version(self, key: str) -> str | None:
        """The version stored for `key` (None: no entry), to tell a miss from a stale one."""
        row = self._loaded().get(key)
        return None if row is None else row[0][1]

    def get(self, key: str, version: str, *, uri: str | None = None) -> TiffIndex | None:
        """The header stored for `key` (`source_key`) at `version`, else None (no entry, or
        one of another version: a rewritten file). `uri`: what its `TiffIndex.uri` says
        (the source's printable URI; the key by default)."""
        row = self._loaded().get(key)
        if row is None or row[0][1] != version:
            return None
        try:
            return decode(row, key if uri is None else uri)
        except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
            raise InputError(
                self.path, f"entry for {key} is malformed ({exc}); {_REBUILD}"
            ) from None

    def put_many(self, items: Iterable[tuple[str, str, TiffIndex]]) -> int:
        """Store (key, version, header) triples, replacing older entries of those keys;
        returns how many were stored (a header JSON cannot hold exactly is skipped)."""
        fresh = {}
        for key, version, idx in items:
            row = encode(key, version, idx)
            if row is not None:
                fresh[key] = row
        if not fresh:
            return 0
        with _locked(self.path):
            rows = _read(self.path) if self.path.exists() else {}
            rows.update(fresh)
            _write(self.path, rows)
        self._rows = rows
        return len(fresh)

    def _loaded(self) -> dict[str, Row]:
        if self._rows is None:
            self._rows = _read(self.path) if self.path.exists() else {}
        return self._rows


# ---- encoding: TiffIndex <-> rows ------------------------------------------------------------
def encode(key: str, version: str, idx: TiffIndex) -> Row | None:
    """A header as rows; None when its georef or extra would not come back exactly."""
    georef = _json_exact(
        [list(idx.georef.crs), idx.georef.transform, list(idx.georef.tiepoints)],
        lambda v: Georef(_tuples(v[0]), None if v[1] is None else _tuples(v[1]), _tuples(v[2])),
        idx.georef,
    )
    extra = _json_exact(idx.extra, _tuples_in_dict, idx.extra)
    if georef is None or extra is None:
        return None
    head = (
        key, version, idx.size, idx.byteorder, idx.dtype.str, idx.bands, idx.compression,
        idx.predictor, idx.planar, idx.photometric, idx.nodata, list(idx.lerc_params),
        bytes(idx.jpeg_tables), extra, georef,
    )  # fmt: skip
    levels = [
        (key, i, lv.height, lv.width, lv.tile_height, lv.tile_width,
         *_array_cols(lv.offsets), *_array_cols(lv.byte_counts))
        for i, lv in enumerate(idx.levels)
    ]  # fmt: skip
    return head, levels


def decode(row: Row, uri: str) -> TiffIndex:
    """A header from its rows, every value checked (ValueError when one is impossible)."""
    head, level_rows = row
    (_, _, size, bo, dtype, bands, compression, predictor, planar, photometric, nodata,
     lerc, jpeg, extra, georef) = head  # fmt: skip
    dt = np.dtype(dtype)
    if bo not in ("<", ">") or dt.kind not in "uif" or dt.itemsize not in (1, 2, 4, 8):
        raise ValueError(f"byte order {bo!r}, dtype {dtype!r}")
    if int(bands) < 1 or int(planar) not in (1, 2) or not level_rows:
        raise ValueError(f"{bands} bands, planar {planar}, {len(level_rows)} levels")
    if [r[1] for r in level_rows] != list(range(len(level_rows))):
        raise ValueError("levels out of order")
    levels = tuple(_level(r, int(size), int(bands) if int(planar) == 2 else 1) for r in level_rows)
    g = json.loads(georef)
    return TiffIndex(
        uri=uri, size=int(size), byteorder=bo, dtype=dt, bands=int(bands),
        compression=int(compression), predictor=int(predictor), planar=int(planar),
        photometric=int(photometric), nodata=None if nodata is None else float(nodata),
        levels=levels, lerc_params=tuple(int(v) for v in lerc), jpeg_tables=bytes(jpeg),
        extra=_tuples_in_dict(json.loads(extra)),
        georef=Georef(_tuples(g[0]), None if g[1] is None else _tuples(g[1]), _tuples(g[2])),
    )  # fmt: skip


def _level(r: tuple, size: int, planes: int) -> Level:
    _, _, h, w, th, tw, odt, oshape, offs, cdt, cshape, counts = r
    lv = Level(
        height=int(h),
        width=int(w),
        tile_height=int(th),
        tile_width=int(tw),
        offsets=_array(odt, oshape, offs),
        byte_counts=_array(cdt, cshape, counts),
    )
    if min(lv.height, lv.width, lv.tile_height, lv.tile_width) < 1:
        raise ValueError(
            f"level of {lv.height}x{lv.width} px, {lv.tile_height}x{lv.tile_width} tiles"
        )
    n = lv.tile_count * planes
    if lv.offsets.shape != (n,) or lv.byte_counts.shape != (n,):
        raise ValueError(f"{lv.offsets.shape} tile offsets for a grid of {n} tiles")
    if n and int((lv.offsets + lv.byte_counts).max()) > size:
        raise ValueError(f"tiles past the end of the {size}-byte file")
    return lv


def _array_cols(a: np.ndarray) -> tuple[str, list[int], bytes]:
    return a.dtype.str, list(a.shape), np.ascontiguousarray(a).tobytes()


def _array(dtype: str, shape: list, blob: bytes) -> np.ndarray:
    dt = np.dtype(dtype)
    if dt.kind != "u" or dt.itemsize not in (1, 2, 4, 8):
        raise ValueError(f"tile table dtype {dtype!r}")
    shape = tuple(int(v) for v in shape)
    if any(v < 0 for v in shape) or math.prod(shape) * dt.itemsize != len(blob):
        raise ValueError(f"tile table of {len(blob)} bytes for shape {shape} {dtype}")
    return np.frombuffer(blob, dt).reshape(shape).copy()  # owned and writable, as parsed


def _tuples(v):
    """JSON lists back to the tuples they were."""
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


def _tuples_in_dict(d: dict) -> dict:
    if not isinstance(d, dict):
        raise ValueError("extra is not a JSON object")
    return {k: _tuples(v) for k, v in d.items()}


def _json_exact(value, back, original) -> str | None:
    """`value` as JSON when `back` rebuilds `original` from it exactly, else None."""
    try:
        text = json.dumps(value, allow_nan=True)
        return text if back(json.loads(text)) == original else None
    except (TypeError, ValueError):
        return None


# ---- the file: read, write, lock ---------------------------------------------------------------
def _read(path: Path) -> dict[str, Row]:
    """Every entry of the file, as stored; InputError naming it when it is not an index."""
    import duckdb

    try:
        # the sandbox of results: this file only, no extension, settings locked
        con = duckdb.connect(str(path), read_only=True, config=dict(READ_SANDBOX))
    except duckdb.Error as exc:
        raise _unreadable(path, exc) from None
    try:
        meta = con.execute("SELECT format, schema FROM ocog_header_index").fetchall()
        if meta != [(FORMAT, SCHEMA)]:
            raise InputError(path, f"header index of format {meta}, this ocog reads "
                                   f"{[(FORMAT, SCHEMA)]}; {_REBUILD}")  # fmt: skip
        heads = con.execute(f"SELECT {_names(_HEADER_COLS)} FROM headers").fetchall()
        levels = con.execute(f"SELECT {_names(_LEVEL_COLS)} FROM levels ORDER BY key, level")
        levels = levels.fetchall()
    except duckdb.Error as exc:
        raise _unreadable(path, exc) from None
    finally:
        con.close()
    rows: dict[str, Row] = {h[0]: (h, []) for h in heads}
    for lv in levels:
        if lv[0] not in rows:
            raise InputError(path, f"levels stored for {lv[0]}, which has no header; {_REBUILD}")
        rows[lv[0]][1].append(lv)
    return rows


def _write(path: Path, rows: dict[str, Row]) -> None:
    """The whole store to a temporary file beside `path`, synced, then renamed over it."""
    import duckdb

    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        con = duckdb.connect(str(tmp))
        try:
            con.execute("CREATE TABLE ocog_header_index (format VARCHAR, schema INTEGER)")
            con.execute("INSERT INTO ocog_header_index VALUES (?, ?)", [FORMAT, SCHEMA])
            _insert(con, "headers", _HEADER_COLS, [h for h, _ in rows.values()])
            _insert(con, "levels", _LEVEL_COLS, [lv for _, lvs in rows.values() for lv in lvs])
            con.execute("CHECKPOINT")
        finally:
            con.close()
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except duckdb.Error as exc:
        raise InputError(path, f"cannot write the header index ({_first_line(exc)})") from None
    finally:
        for leftover in (tmp, Path(f"{tmp}.wal")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def _insert(con, table: str, cols: tuple, rows: list[tuple]) -> None:
    """All rows in one statement: each column passed as one list and unnested."""
    con.execute(f"CREATE TABLE {table} ({', '.join(f'{n} {t}' for n, t in cols)})")
    if rows:
        columns = [list(c) for c in zip(*rows, strict=True)]
        picks = ", ".join(f"unnest(${i + 1})" for i in range(len(cols)))
        con.execute(f"INSERT INTO {table} SELECT {picks}", columns)


def _names(cols: tuple) -> str:
    return ", ".join(n for n, _ in cols)


@contextlib.contextmanager
def _locked(path: Path, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """One writer at a time (`<path>.lock`, flock): merges never lose another's entries."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "a+b") as lock:
        try:
            import fcntl
        except ImportError:  # not POSIX: no cross-process lock (renames stay atomic)
            yield
            return
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise InputError(path, f"locked by another writer for more than {wait_s:g} s"
                                           f" (lock file {path}.lock)") from None  # fmt: skip
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _unreadable(path: Path, exc: BaseException) -> InputError:
    return InputError(path, f"not a readable header index ({_first_line(exc)}); {_REBUILD}")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
