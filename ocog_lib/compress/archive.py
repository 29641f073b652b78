"""A dataset's compressed archive: every grid patch as a bitstream and a hash code, in
DuckDB (`compressed_patches`), with one summary row against the baselines
(`compressed_archives`).

The patches are `embed.infer.embed_dataset`'s: every window of the engine's grid sampler,
streamed in batches, placed and labelled by the same helpers (`raster_place`,
`patch_centres`, `patch_labels`, H3 cells at `resolution_for` the finest pixel size), so a
hash search and an embedding search name the same patches. Each batch is normalised with
the model's statistics, range-coded (`bitstream.encode`) and its hash codes computed
from those bitstreams by entropy decoding alone (`hashing.codes_from_bitstreams`): the
codes are what an archive of bitstreams yields, not a shortcut through the pixels.

The raw patches are never held whole; the bitstreams and codes are (they are what is
written, in one transaction per table: `results.write_rows` takes one `Columns`), a few
hundred bytes a patch. The summary's rate (bytes, bpp) and its lossless baselines
(`baselines.lossless_bytes`: ZSTD and LERC_ZSTD tile payloads of a tiled GeoTIFF, one
patch a tile, summed batch by batch, which is exact: tiles are coded alone) cover every
patch. The distortion (PSNR, SSIM of the decoded bitstreams on the DN scale, peak = the
data range over every patch, as `quality.codec_quality`) and the JPEG 2000 point at the
codec's bpp are measured on an evenly spaced sample of at most `stats_patches` patches
(all of them in a small archive; the summary's config says how many): a bisection over
JPEG 2000's rate encodes the sample a dozen times, its rate-distortion curve (`rd_png`)
a dozen more. That point is `lossy_at_bpp`'s
"jpeg2000-mosaic", the sample as one image of p x p tiles, each decodable alone as a
bitstream is, the main header paid once as the archive's one table pays it; a J2K stream
per patch pays ~0.9 bpp of headers at 32 px, more than a trained codec's whole rate. A
rebuild of the same (dataset, codec_id) replaces its rows and its summary.

Readers select the code and location columns only (`load_codes`): searching an archive
never reads a bitstream. `read_bitstreams` and `decode_patches` read the few asked for;
`check_codes` recomputes a sample's codes from their stored bitstreams (the asset check
that what search reads is what the archive holds).
"""

from __future__ import annotations

import time
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path

import duckdb
import numpy as np

from ocog_lib import results
from ocog_lib.compress.baselines import (
    LossyPoint,
    lossless_bytes,
    lossy_at_bpp,
    lossy_curve,
    rd_png,
)
from ocog_lib.compress.bitstream import VERSION, decode, decode_latents, encode
from ocog_lib.compress.hashing import codes_from_bitstreams
from ocog_lib.compress.metrics import WINDOW, bits_per_pixel, psnr, ssim, to_dn
from ocog_lib.compress.train import LoadedCodec, ProgressFn, load_codec
from ocog_lib.data.lineage import model_hash
from ocog_lib.embed.h3cells import resolution_for
from ocog_lib.embed.infer import patch_labels, place_windows, raster_place
from ocog_lib.embed.train import DatasetFiles, dataset_files, normalised
from ocog_lib.embed.vectors import NO_LABEL
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings
from ocog_lib.stream.config import StreamConfig
from ocog_lib.stream.dataset import CogStream
from ocog_lib.stream.device import pick_device
from ocog_lib.stream.samplers import SamplerConfig, sample_windows

ARCHIVE_TABLE, SUMMARY_TABLE = "compressed_patches", "compressed_archives"
STATS_PATCHES = 256  # default cap on the patches whose decoding and JPEG 2000 point are measured
LOSSY = "jpeg2000-mosaic"  # the lossy baseline, at the codec's bpp
_META = f'idx, cell, lon, lat, time, source, "row", col, coalesce(label, {NO_LABEL}) AS label'


class NoArchive(InputError):
    """No compressed archive (of this dataset, codec) in the results file yet."""


@dataclass(frozen=True)
class ArchiveBuild:
    """What one build wrote: the set's size and rate against the baselines."""

    run_id: str
    dataset: str
    codec_id: str
    model_id: str
    patches: int
    patch_size: int
    bands: int
    dtype: str  # the source rasters'
    code_bits: int
    h3_resolution: int
    bitstream_bytes: int  # every patch's stream, headers included
    bpp: float  # 8 x bitstream_bytes / pixels
    psnr_db: float  # decoded bitstreams, DN scale, on `stats_patches` patches
    ssim: float | None  # None: patches smaller than SSIM's window
    peak: float  # data range over every patch (the PSNR/SSIM peak)
    raw_bytes: int  # uncompressed, source dtype
    zstd_bytes: int | None  # None: patches not a multiple of 16 px (TIFF tiles)
    lerc_zstd_bytes: int | None
    lossy: LossyPoint | None  # JPEG 2000 at (not above) the codec's bpp, on `stats_patches`
    curve: tuple[LossyPoint, ...]  # JPEG 2000's rate-distortion points on the same sample
    stats_patches: int
    seconds: float  # the whole build: streaming, coding, baselines, the patches' write

    @property
    def ratio(self) -> float:
        """raw bytes / bitstream bytes."""
        return self.raw_bytes / self.bitstream_bytes if self.bitstream_bytes else 0.0

    @property
    def bytes_per_sample(self) -> int:
        return np.dtype(self.dtype).itemsize

    @property
    def rd_png(self) -> bytes:
        """PNG of PSNR against bpp: the codec's point beside JPEG 2000's curve."""
        return rd_png([("learned codec", self.bpp, self.psnr_db)], {LOSSY: list(self.curve)},
                      f"{self.dataset}: {self.patches} patches, codec {self.codec_id}")


def rate_distortion_png(build: ArchiveBuild, db_path: str | Path) -> bytes:
    """PSNR against bpp of every codec archived for the build's dataset (one point each,
    labelled by its lmbda and code bits; the same sampled patches and peak, so they
    compare) beside JPEG 2000's curve on this build's sample: the learned codec's
    rate-distortion curve is its models at several lmbda."""
    sql = (f"SELECT codec_id, bpp, psnr_db, config->>'lmbda', code_bits FROM {SUMMARY_TABLE} "
           "WHERE dataset = ? AND patches = ? ORDER BY bpp")
    _, rows = results.query(db_path, sql, [build.dataset, build.patches])
    points = [(f"lmbda {float(lm):g}" + (f", {bits} b" if bits else "")
               + (" (this)" if cid == build.codec_id else ""), float(bpp), float(psnr))
              for cid, bpp, psnr, lm, bits in rows
              if bpp is not None and psnr is not None and lm is not None]  # fmt: skip
    points = points or [("learned codec", build.bpp, build.psnr_db)]
    return rd_png(points, {LOSSY: list(build.curve)},
                  f"{build.dataset}: {build.patches} patches, learned codecs vs {LOSSY}")


@dataclass(frozen=True)
class ArchiveCodes:
    """An archive's codes and locations, row i = idx i (never its bitstreams)."""

    dataset: str
    codec_id: str
    model_id: str
    bits: int
    codes: np.ndarray  # uint8 (n, bits/8) packed
    cells: np.ndarray  # uint64 (n,)
    lon: np.ndarray  # float64
    lat: np.ndarray
    time: np.ndarray  # datetime64[us], NaT unknown
    labels: np.ndarray  # int16, NO_LABEL unknown
    source: np.ndarray  # object
    row: np.ndarray  # int32
    col: np.ndarray  # int32

    def __len__(self) -> int:
        return len(self.codes)


@dataclass
class _Acc:
    """What streaming gathers: every patch's stream, code, label and window, the lossless
    baselines' bytes, the data range, and the stats sample's raw patches."""

    take: np.ndarray  # sorted positions (in streaming order) of the stats sample
    streams: list[bytes] = field(default_factory=list)
    codes: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    windows: list[np.ndarray] = field(default_factory=list)
    sample: list[np.ndarray] = field(default_factory=list)
    zstd: int | None = 0
    lerc: int | None = 0
    lo: float = np.inf
    hi: float = -np.inf

    @property
    def seen(self) -> int:
        return len(self.streams)


# --- building -----------------------------------------------------------------------------


def build_archive(model_path: str | Path, settings: Settings | None = None, *,
                  batch_size: int = 256, device: str = "cpu",
                  stats_patches: int = STATS_PATCHES,
                  progress: ProgressFn | None = None) -> ArchiveBuild:  # fmt: skip
    """Every grid patch of the model's dataset coded, hashed from its bitstream and stored
    as the set (dataset, codec_id), earlier rows replaced; then its summary row."""
    settings = settings or Settings.from_env()
    t0 = time.perf_counter()
    loaded = load_codec(model_path, pick_device(device))
    meta = loaded.meta
    files = dataset_files(meta["dataset"], meta["variant"], settings, meta["role"])
    if files.fingerprint != meta["fingerprint"]:
        raise InputError(f"{meta['dataset']}/{meta['variant']}",
                         f"its files changed since codec {meta['model_id']} was trained "
                         "on them: retrain it before archiving with it")  # fmt: skip
    patch = int(meta["patch_size"])
    places = [raster_place(p) for p in files.images]
    res = resolution_for(min(p.pixel_size_m for p in places), patch)
    acc, dtype = _stream(loaded, files, batch_size, stats_patches, progress)
    wins = np.concatenate(acc.windows)
    cells, lon, lat, times = place_windows(wins, places, patch, res)
    where = {"dataset": meta["dataset"], "codec_id": str(meta["codec_id"])}
    results.write_rows(settings.results_db, ARCHIVE_TABLE,
                       _patch_columns(meta, acc, wins, files.relpaths, cells, lon, lat, times),
                       replace_where=where)  # fmt: skip
    build = replace(_summarise(loaded, acc, dtype, int(res)), seconds=time.perf_counter() - t0)
    results.write_rows(settings.results_db, SUMMARY_TABLE, [_summary_row(build, meta, model_path)],
                       replace_where=where)  # fmt: skip
    return build


def _stream(loaded: LoadedCodec, files: DatasetFiles, batch_size: int, stats_patches: int,
            progress: ProgressFn | None) -> tuple[_Acc, np.dtype]:  # fmt: skip
    """Every grid window of the files streamed by the engine, batch by batch, into `_Acc`;
    with the source dtype."""
    patch = int(loaded.meta["patch_size"])
    scfg = StreamConfig(sampler="grid", patch_size=patch, batch_size=batch_size,
                        dtype="float32")  # fmt: skip
    stream = CogStream(files.images, files.masks or None, scfg,
                       windows=np.empty((0, 3), dtype=np.int64))  # fmt: skip
    try:
        dtype = np.dtype(stream.rasters[0].dtype)
        windows = sample_windows(stream.grids, SamplerConfig("grid", patch))
        acc = _Acc(_sample_positions(len(windows), stats_patches))
        for b in stream.loader(windows):
            _add_batch(acc, loaded, b, dtype)
            if progress is not None:
                progress({"event": "archive", "patches": acc.seen, "of": len(windows)})
    finally:
        stream.close()
    if not acc.seen:
        raise InputError(f"{files.dataset}/{files.variant}", "has no grid patches")
    return acc, dtype


def _sample_positions(n: int, cap: int) -> np.ndarray:
    """Evenly spaced positions of at most `cap` of n patches (all when n <= cap)."""
    if cap < 1:
        raise InputError(f"stats_patches {cap}", "must be at least 1")
    if n <= cap:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, cap).round().astype(np.int64))


def _add_batch(acc: _Acc, loaded: LoadedCodec, batch: dict, dtype: np.dtype) -> None:
    """One engine batch coded and hashed from its streams; baselines and sample taken."""
    raw = batch["image"]
    shape = tuple(raw.shape[1:])
    streams = encode(loaded.codec, normalised(raw, loaded.meta["norm"]))
    acc.codes.append(codes_from_bitstreams(loaded.codec, loaded.head, streams, shape))
    acc.labels.append(patch_labels(batch.get("mask"), len(raw)))
    acc.windows.append(batch["window"].numpy().astype(np.int64))
    dn = raw.numpy().astype(dtype)  # engine floats hold the source values exactly
    if acc.zstd is not None and acc.lerc is not None and dn.shape[2] % 16 == 0:
        acc.zstd += lossless_bytes(dn, "ZSTD")
        acc.lerc += lossless_bytes(dn, "LERC_ZSTD")
    else:
        acc.zstd = acc.lerc = None
    acc.lo, acc.hi = min(acc.lo, float(dn.min())), max(acc.hi, float(dn.max()))
    first = acc.seen
    pick = acc.take[(acc.take >= first) & (acc.take < first + len(raw))] - first
    if len(pick):
        acc.sample.append(dn[pick])
    acc.streams += streams


def _objects(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _patch_columns(meta: dict, acc: _Acc, windows: np.ndarray, sources: list[str],
                   cells: np.ndarray, lon: np.ndarray, lat: np.ndarray,
                   times: np.ndarray) -> results.Columns:  # fmt: skip
    n = len(windows)
    labels = np.concatenate(acc.labels).astype(np.int16)
    codes = np.concatenate(acc.codes)
    return results.Columns({
        "dataset": np.full(n, meta["dataset"], dtype=object),
        "codec_id": np.full(n, meta["codec_id"], dtype=object),
        "model_id": np.full(n, meta["model_id"], dtype=object),
        "idx": np.arange(n, dtype=np.int64), "cell": cells.astype(np.uint64),
        "lon": lon, "lat": lat, "time": times,
        "source": _objects([sources[f] for f in windows[:, 0]]),
        "row": windows[:, 1].astype(np.int32), "col": windows[:, 2].astype(np.int32),
        "label": np.where(labels == NO_LABEL, None, labels.astype(object)),
        "code_bits": np.full(n, 8 * codes.shape[1], dtype=np.int16),
        "code": _objects([c.tobytes() for c in codes]),
        "format_version": np.full(n, VERSION, dtype=np.int16),
        "bitstream": _objects(acc.streams),
    })  # fmt: skip


def _summarise(loaded: LoadedCodec, acc: _Acc, dtype: np.dtype, res: int) -> ArchiveBuild:
    """Rate over every patch; distortion and the JPEG 2000 point on the stats sample."""
    meta, codec = loaded.meta, loaded.codec
    ref = np.concatenate(acc.sample)
    n, (bands, p, _) = acc.seen, ref.shape[1:]
    bpp = bits_per_pixel(acc.streams, n * p * p)
    peak = acc.hi - acc.lo
    streams = [acc.streams[i] for i in acc.take]
    out = to_dn(decode(codec, streams, (bands, p, p)), meta["norm"])
    ref64 = ref.astype(np.float64)
    return ArchiveBuild(
        run_id=uuid.uuid4().hex[:12], dataset=meta["dataset"], codec_id=str(meta["codec_id"]),
        model_id=meta["model_id"], patches=n, patch_size=int(p), bands=int(bands),
        dtype=str(dtype), code_bits=int(loaded.head.spec.bits), h3_resolution=res,
        bitstream_bytes=sum(len(s) for s in acc.streams), bpp=bpp,
        psnr_db=psnr(ref64, out, peak),
        ssim=ssim(ref64, out, peak) if p >= WINDOW else None, peak=peak,
        raw_bytes=n * bands * p * p * dtype.itemsize, zstd_bytes=acc.zstd,
        lerc_zstd_bytes=acc.lerc, lossy=_lossy(ref, bpp, peak), curve=_curve(ref, peak),
        stats_patches=len(ref), seconds=0.0,
    )  # fmt: skip


def _lossy(ref: np.ndarray, bpp: float, peak: float) -> LossyPoint | None:
    """JPEG 2000 at (not above) the codec's rate; None when it cannot go as low (or the
    patches are constant: no peak)."""
    try:
        return lossy_at_bpp(ref, bpp, peak, LOSSY)
    except InputError:
        return None


def _curve(ref: np.ndarray, peak: float) -> tuple[LossyPoint, ...]:
    """JPEG 2000's points at its default qualities; () on constant patches (no peak)."""
    try:
        return tuple(lossy_curve(ref, peak, LOSSY))
    except InputError:
        return ()


def _summary_row(b: ArchiveBuild, meta: dict, model_path: str | Path) -> dict:
    """The compressed_archives row of a build (the lossy columns NULL without a point)."""
    from ocog_lib.host import git_sha, host_facts

    lossy = b.lossy
    config = dict(meta.get("config", {}), variant=meta.get("variant"), steps=meta.get("steps"),
                  train_s=meta.get("seconds"), fingerprint=meta.get("fingerprint"),
                  model_path=str(model_path), h3_resolution=b.h3_resolution,
                  stats_patches=b.stats_patches, peak=b.peak,
                  lossy_quality=lossy.quality if lossy else None)  # fmt: skip
    point = dict(lossy_codec=lossy.codec, lossy_bpp=lossy.bpp, lossy_psnr_db=lossy.psnr_db,
                 lossy_ssim=lossy.ssim) if lossy else {}  # fmt: skip
    return dict(run_id=b.run_id, dataset=b.dataset, codec_id=b.codec_id, model_id=b.model_id,
                patches=b.patches, patch_size=b.patch_size, bands=b.bands, dtype=b.dtype,
                code_bits=b.code_bits, bitstream_bytes=b.bitstream_bytes, bpp=b.bpp,
                psnr_db=b.psnr_db, ssim=b.ssim, raw_bytes=b.raw_bytes, zstd_bytes=b.zstd_bytes,
                lerc_zstd_bytes=b.lerc_zstd_bytes, seconds=b.seconds, config=config,
                git_sha=git_sha(), host=host_facts(), content_hash=model_hash(model_path),
                **point)  # fmt: skip


# --- reading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredArchive:
    """One (dataset, codec_id) set as the patches table holds it."""

    dataset: str
    codec_id: str
    model_id: str
    bits: int
    rows: int


def stored_archives(con: duckdb.DuckDBPyConnection, dataset: str | None = None
                    ) -> list[StoredArchive]:  # fmt: skip
    """Every stored set (of `dataset`), newest write first; a set whose rows disagree on
    their code length is refused."""
    if not con.execute("SELECT 1 FROM information_schema.tables WHERE table_name = ?",
                       [ARCHIVE_TABLE]).fetchone():  # fmt: skip
        return []
    rows = con.execute(
        f"SELECT dataset, codec_id, any_value(model_id), min(code_bits), max(code_bits), "
        f"count(*) FROM {ARCHIVE_TABLE} WHERE ? IS NULL OR dataset = ? GROUP BY dataset, codec_id "
        f"ORDER BY max(written_at) DESC, dataset, codec_id", [dataset, dataset]).fetchall()
    out = []
    for ds, cid, mid, lo, hi, n in rows:
        if lo != hi:
            raise InputError(f"archive {ds}/{cid}", f"its rows disagree on code_bits ({lo} "
                             f"and {hi}): rebuild it")  # fmt: skip
        out.append(StoredArchive(ds, cid, mid, int(lo), int(n)))
    return out


def pick_archive(archives: list[StoredArchive], db_path: str | Path, dataset: str,
                 codec_id: str | None = None) -> StoredArchive:  # fmt: skip
    """The newest of `archives` of `dataset` (and `codec_id`); NoArchive naming the others."""
    mine = [a for a in archives if a.dataset == dataset]
    found = [a for a in mine if codec_id in (None, a.codec_id)]
    if found:
        return found[0]
    if not mine:
        raise NoArchive(f"dataset {dataset!r}", f"no compressed archive in {db_path} (build "
                        "one: materialize the compressed archive asset or run `ocog "
                        "compress`)")  # fmt: skip
    raise NoArchive(f"archive {dataset}/{codec_id}", "not in the results file (it holds "
                    f"codec(s) {', '.join(a.codec_id for a in mine)})")  # fmt: skip


def _connect(db_path: str | Path, dataset: str) -> AbstractContextManager:
    if not Path(db_path).exists():
        raise NoArchive(f"dataset {dataset!r}", f"no results file {db_path}, so no compressed "
                        "archive (materialize the compressed archive asset or run `ocog "
                        "compress`)")  # fmt: skip
    return results.connect(db_path, read_only=True)


def load_codes(db_path: str | Path, dataset: str, codec_id: str | None = None) -> ArchiveCodes:
    """The archive's codes and locations (the newest archive of `dataset` by default),
    read without touching a bitstream."""
    with _connect(db_path, dataset) as con:
        arc = pick_archive(stored_archives(con, dataset), db_path, dataset, codec_id)
        return read_codes(con, arc)


def read_codes(con: duckdb.DuckDBPyConnection, arc: StoredArchive) -> ArchiveCodes:
    """`load_codes` in an open connection: code and location columns only."""
    got = con.execute(f"SELECT {_META}, code FROM {ARCHIVE_TABLE} WHERE dataset = ? AND "
                      "codec_id = ? ORDER BY idx", [arc.dataset, arc.codec_id]).fetchnumpy()
    what = f"archive {arc.dataset}/{arc.codec_id}"
    idx = np.asarray(got["idx"], dtype=np.int64)
    if not np.array_equal(idx, np.arange(len(idx))):
        raise InputError(what, "its idx are not 0..n-1: rebuild it")
    lengths = np.fromiter((len(c) for c in got["code"]), dtype=np.int64, count=len(idx))
    bad = np.flatnonzero(lengths * 8 != arc.bits)
    if len(bad):
        raise InputError(what, f"{len(bad)} stored code(s) are not {arc.bits} bits, its "
                         f"code_bits (first: idx {bad[0]}, {8 * lengths[bad[0]]} bits)")
    codes = np.frombuffer(b"".join(bytes(c) for c in got["code"]), dtype=np.uint8)
    return ArchiveCodes(
        arc.dataset, arc.codec_id, arc.model_id, arc.bits,
        codes.reshape(len(idx), arc.bits // 8).copy(), np.asarray(got["cell"], np.uint64),
        np.asarray(got["lon"], np.float64), np.asarray(got["lat"], np.float64),
        _times(got["time"]), np.asarray(got["label"], np.int16),
        np.asarray(got["source"], dtype=object), np.asarray(got["row"], np.int32),
        np.asarray(got["col"], np.int32))  # fmt: skip


def _times(values) -> np.ndarray:
    """A fetched TIMESTAMP column (masked where NULL) as datetime64[us] with NaT."""
    filled = np.ma.filled(values.astype("datetime64[us]"), np.datetime64("NaT"))
    return np.asarray(filled, dtype="datetime64[us]")


def read_bitstreams(db_path: str | Path, dataset: str, codec_id: str,
                    idx: np.ndarray | list[int]) -> list[bytes]:  # fmt: skip
    """The stored bitstreams of rows `idx` of the archive (dataset, codec_id), in that order."""
    wanted = [int(i) for i in np.asarray(idx).ravel()]
    with _connect(db_path, dataset) as con:
        pick_archive(stored_archives(con, dataset), db_path, dataset, codec_id)
        rows = con.execute(
            f"SELECT idx, bitstream FROM {ARCHIVE_TABLE} WHERE dataset = ? AND codec_id = ? AND "
            "idx IN (SELECT unnest(?::BIGINT[]))", [dataset, codec_id, wanted]).fetchall()
    found = {int(i): bytes(s) for i, s in rows}
    missing = [i for i in wanted if i not in found]
    if missing:
        raise InputError(f"archive {dataset}/{codec_id}", f"holds no patch idx "
                         f"{', '.join(map(str, missing[:10]))}")  # fmt: skip
    return [found[i] for i in wanted]


def archive_codec(model_path: str | Path, db_path: str | Path, dataset: str, *,
                  device: str = "cpu") -> tuple[LoadedCodec, tuple[int, int, int]]:  # fmt: skip
    """The model, refused unless its codec wrote an archive of `dataset` (naming both ids),
    and its patches' (C, p, p)."""
    loaded = load_codec(model_path, pick_device(device))
    mine = str(loaded.meta["codec_id"])
    with _connect(db_path, dataset) as con:
        have = [a.codec_id for a in stored_archives(con, dataset)]
    if not have:
        pick_archive([], db_path, dataset)  # NoArchive
    if mine not in have:
        raise InputError(f"codec {mine} ({model_path})", f"did not write the archive of "
                         f"{dataset}: it was written by codec {', '.join(have)}; decode "
                         "with that model")  # fmt: skip
    p = int(loaded.meta["patch_size"])
    return loaded, (loaded.codec.spec.in_channels, p, p)


def decode_patches(model_path: str | Path, db_path: str | Path, dataset: str,
                   idx: np.ndarray | list[int], *, device: str = "cpu") -> np.ndarray:
    """uint16 DN (n, C, p, p) of archived patches `idx`, decoded by the model whose codec
    wrote them (another codec is refused, naming both)."""
    loaded, shape = archive_codec(model_path, db_path, dataset, device=device)
    codec_id = str(loaded.meta["codec_id"])
    streams = read_bitstreams(db_path, dataset, codec_id, idx)
    try:
        decoded = decode(loaded.codec, streams, shape)
    except InputError:
        raise _bad_stream(loaded, streams, shape, dataset, codec_id, idx) from None
    return to_dn(decoded, loaded.meta["norm"])


def check_codes(model_path: str | Path, db_path: str | Path, dataset: str, codec_id: str, *,
                sample: int = 256, device: str = "cpu") -> tuple[int, ...]:  # fmt: skip
    """idx of the rows (of an evenly spaced sample) whose stored code differs from the code
    recomputed from their stored bitstream: what search reads against what is archived."""
    loaded, shape = archive_codec(model_path, db_path, dataset, device=device)
    if loaded.meta["codec_id"] != codec_id:
        raise InputError(f"codec {loaded.meta['codec_id']} ({model_path})",
                         f"is not codec {codec_id} of the archive of {dataset}")  # fmt: skip
    stored = load_codes(db_path, dataset, codec_id)
    idx = _sample_positions(len(stored), sample)
    streams = read_bitstreams(db_path, dataset, codec_id, idx)
    try:
        again = codes_from_bitstreams(loaded.codec, loaded.head, streams, shape)
    except InputError:
        raise _bad_stream(loaded, streams, shape, dataset, codec_id, idx) from None
    return tuple(int(i) for i in idx[(again != stored.codes[idx]).any(axis=1)])


def _bad_stream(loaded: LoadedCodec, streams: list[bytes], shape: tuple[int, int, int],
                dataset: str, codec_id: str, idx) -> InputError:  # fmt: skip
    """The first stored stream that does not decode, named by its idx in the archive."""
    wanted = [int(i) for i in np.asarray(idx).ravel()]
    for i, stream in zip(wanted, streams, strict=True):
        try:
            decode_latents(loaded.codec, [stream], shape)
        except InputError as exc:
            return InputError(f"archive {dataset}/{codec_id} patch idx {i}",
                              f"its stored bitstream does not decode: {exc.cause}")
    return InputError(f"archive {dataset}/{codec_id}", "its bitstreams do not decode")

