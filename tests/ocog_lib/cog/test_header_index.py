"""The persisted header index: every field comes back, a hit reads no header byte, a
rewritten file misses, a bad index file is an error naming it, no secret is stored."""

from __future__ import annotations

import math
import os
import threading
from dataclasses import fields, replace
from pathlib import Path

import duckdb
import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from ocog_lib.cog.header_index import HeaderIndex, open_pinned, source_key
from ocog_lib.cog.tiff_index import Level, TiffIndex, parse_tiff
from ocog_lib.errors import InputError
from ocog_lib.storage import open_source
from ocog_lib.stream.config import StreamConfig
from ocog_lib.stream.dataset import CogStream
from ocog_lib.stream.rasters import open_raster, open_rasters
from tests.support.rangeserver import RangeServer
from tests.support.rasters import real_pixels, write_raster
from tests.support.s3 import BUCKET

# name -> (dtype, bands, height, width, driver, creation options)
LAYOUTS = {
    "zstd-p2": ("uint16", 4, 300, 260, "COG", dict(compress="ZSTD", predictor=2, blocksize=128)),
    "planar": ("uint16", 4, 200, 230, "GTiff", dict(
        tiled=True, blockxsize=64, blockysize=64, compress="DEFLATE", predictor=2,
        interleave="band")),
    "float32-nodata": ("float32", 2, 200, 200, "COG", dict(
        compress="ZSTD", predictor=3, blocksize=128, nodata=-9999.0)),
    "float32-nan": ("float32", 1, 130, 140, "COG", dict(
        compress="DEFLATE", blocksize=64, nodata=float("nan"))),
    "lerc": ("uint16", 4, 200, 200, "COG", dict(
        compress="LERC_ZSTD", max_z_error=0, blocksize=128)),
    "overviews": ("uint16", 4, 600, 520, "COG", dict(
        compress="ZSTD", predictor=2, blocksize=128, overview_count=3)),
    "bigtiff-big-endian": ("uint16", 4, 200, 200, "GTiff", dict(
        tiled=True, blockxsize=128, blockysize=128, compress="DEFLATE", BIGTIFF="YES",
        ENDIANNESS="BIG")),
    "jpeg": ("uint8", 3, 128, 128, "GTiff", dict(  # GDAL's fallback: stored only by hand
        tiled=True, blockxsize=64, blockysize=64, compress="JPEG", photometric="RGB")),
}  # fmt: skip
# the same bands and dtype: one stream over them all
STREAMED = ["zstd-p2", "planar", "lerc", "overviews", "bigtiff-big-endian"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("header_index")
    out = {}
    for i, (name, (dtype, bands, h, w, driver, opts)) in enumerate(LAYOUTS.items()):
        opts = dict(opts)
        nodata = opts.pop("nodata", None)
        arr = real_pixels(bands, h, w, dtype, seed=i)
        out[name] = write_raster(root / f"{name}.tif", arr, driver=driver, nodata=nodata, **opts)
    return out


def assert_same_index(got: TiffIndex, want: TiffIndex) -> None:
    """Field by field, arrays by value, dtype and shape, NaN nodata as NaN."""
    for f in fields(TiffIndex):
        a, b = getattr(got, f.name), getattr(want, f.name)
        if f.name == "levels":
            assert len(a) == len(b)
            for la, lb in zip(a, b, strict=True):
                for g in fields(Level):
                    x, y = getattr(la, g.name), getattr(lb, g.name)
                    if isinstance(y, np.ndarray):
                        assert x.dtype == y.dtype and x.shape == y.shape
                        np.testing.assert_array_equal(x, y)
                    else:
                        assert x == y, g.name
        elif f.name == "dtype":
            assert a.str == b.str
        elif f.name == "nodata" and b is not None and math.isnan(b):
            assert a is not None and math.isnan(a)
        else:
            assert a == b and type(a) is type(b), f.name


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_every_field_round_trips(files, tmp_path, name):
    want = parse_tiff(open_source(str(files[name])))
    HeaderIndex(tmp_path / "h.duckdb").put_many([("k", "v1", want)])
    index = HeaderIndex(tmp_path / "h.duckdb")  # a fresh instance: read from the file
    assert index.get("k", "v2") is None  # another version: a miss
    got = index.get("k", "v1", uri=want.uri)
    assert_same_index(got, want)
    if name == "overviews":
        assert len(got.levels) == 4
    if name == "jpeg":
        assert got.jpeg_tables and not got.fast_path
    assert got.georef.crs == (("EPSG", 32618),)


def _patches_match(stream: CogStream, paths: list[Path]) -> int:
    n, p = 0, stream.cfg.patch_size
    handles = [rasterio.open(x) for x in paths]
    try:
        for batch in stream.loader():
            for b, (fid, row, col) in enumerate(batch["window"].tolist()):
                want = handles[fid].read(window=Window(col, row, p, p))
                np.testing.assert_array_equal(batch["image"][b].numpy(), want)
                n += 1
    finally:
        for h in handles:
            h.close()
    return n


def test_second_run_reads_no_header_byte_and_gives_the_same_patches(files, tmp_path):
    paths = [files[n] for n in STREAMED]
    uris = [str(p) for p in paths]
    cold, first = open_rasters(uris, HeaderIndex(tmp_path / "h.duckdb"))
    assert (first.misses, first.hits, first.uncached) == (len(uris), 0, 0)
    assert first.header_bytes_fetched > 0
    warm, second = open_rasters(uris, HeaderIndex(tmp_path / "h.duckdb"))
    assert (second.hits, second.misses, second.stale) == (len(uris), 0, 0)
    assert second.header_bytes_fetched == 0 and second.probe_requests == 0
    assert all(r.source.stats().bytes == 0 for r in warm)
    for a, b in zip(warm, cold, strict=True):
        assert_same_index(a.index, b.index)
        assert (a.uri, a.dtype, a.height, a.width) == (b.uri, b.dtype, b.height, b.width)
    cfg = StreamConfig(sampler="random", patch_size=64, batch_size=8, length=40, seed=3)
    assert _patches_match(CogStream(uris, config=cfg, rasters=warm), paths) == 40


def test_open_rasters_without_an_index_is_open_raster(files):
    uri = str(files["zstd-p2"])
    (got,), stats = open_rasters([uri])
    want = open_raster(uri)
    assert_same_index(got.index, want.index)
    assert (stats.misses, stats.hits, stats.uncached) == (1, 0, 0)


def test_rewritten_file_misses_and_replaces_its_entry(tmp_path):
    path = tmp_path / "scene.tif"
    write_raster(path, real_pixels(2, 200, 200, "uint16"), compress="ZSTD", blocksize=128)
    index_path = tmp_path / "h.duckdb"
    (old,), _ = open_rasters([str(path)], HeaderIndex(index_path))
    write_raster(path, real_pixels(2, 260, 300, "uint16", seed=5), compress="DEFLATE", blocksize=64)
    (new,), stats = open_rasters([str(path)], HeaderIndex(index_path))
    assert (stats.stale, stats.hits, stats.misses) == (1, 0, 0)
    assert (new.height, new.width, new.index.compression_name) == (260, 300, "DEFLATE")
    assert_same_index(new.index, parse_tiff(open_source(str(path))))
    (again,), stats = open_rasters([str(path)], HeaderIndex(index_path))
    assert stats.hits == 1 and len(HeaderIndex(index_path)) == 1
    assert_same_index(again.index, new.index)
    with pytest.raises(InputError, match="changed while streaming"):
        old.source.read(0, 16)  # the old raster never reads the new file's bytes


def test_hit_is_pinned_to_the_version_it_checked(files, tmp_path):
    src, version = open_pinned(str(files["zstd-p2"]))
    assert version.startswith("file:") and source_key(src) == str(files["zstd-p2"].resolve())
    idx = parse_tiff(src)
    HeaderIndex(tmp_path / "h.duckdb").put_many([(source_key(src), version, idx)])
    # touched after the check: a read of the raster built from the check fails
    (r,), stats = open_rasters([str(files["zstd-p2"])], HeaderIndex(tmp_path / "h.duckdb"))
    assert stats.hits == 1
    st = files["zstd-p2"].stat()
    os.utime(files["zstd-p2"], ns=(st.st_atime_ns, st.st_mtime_ns + 1000))
    with pytest.raises(InputError, match="modified in place"):
        r.source.read(0, 16)


def test_gdal_fallbacks_are_not_stored(files, tmp_path):
    (r,), stats = open_rasters([str(files["jpeg"])], HeaderIndex(tmp_path / "h.duckdb"))
    assert not r.fast and (stats.misses, stats.uncached) == (1, 1)
    assert not (tmp_path / "h.duckdb").exists()


def _index_file(files, tmp_path) -> Path:
    path = tmp_path / "h.duckdb"
    open_rasters([str(files["zstd-p2"])], HeaderIndex(path))
    return path


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "flipped", "foreign"])
def test_a_damaged_index_file_is_an_error_naming_it(files, tmp_path, damage):
    path = _index_file(files, tmp_path)
    data = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(20_000))
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "flipped":  # in the first block: DuckDB's checksum
        path.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    else:
        path.unlink()
        with duckdb.connect(str(path)) as con:
            con.execute("CREATE TABLE results (x INTEGER)")
    with pytest.raises(InputError) as err:
        open_rasters([str(files["zstd-p2"])], HeaderIndex(path))
    assert err.value.what == str(path)
    assert "header index" in err.value.cause and "delete it to rebuild" in err.value.cause


@pytest.mark.parametrize(
    ("column", "value", "cause"),
    [
        ("offsets", b"\0" * 8, "tile table of 8 bytes"),
        ("offsets_dtype", "|O", "tile table dtype"),
        ("tile_width", 32, "tile offsets for a grid"),
    ],
)
def test_a_malformed_entry_is_an_error_not_a_wrong_raster(files, tmp_path, column, value, cause):
    path = _index_file(files, tmp_path)
    with duckdb.connect(str(path)) as con:
        con.execute(f"UPDATE levels SET {column} = ? WHERE level = 0", [value])
    with pytest.raises(InputError, match=cause) as err:
        open_rasters([str(files["zstd-p2"])], HeaderIndex(path))
    assert err.value.what == str(path) and "malformed" in err.value.cause


def test_tiles_past_the_end_of_the_file_are_refused(files, tmp_path):
    path = _index_file(files, tmp_path)
    with duckdb.connect(str(path)) as con:
        con.execute("UPDATE headers SET size = 1000")
        version = con.execute("SELECT version FROM headers").fetchone()[0]
        key = con.execute("SELECT key FROM headers").fetchone()[0]
    with pytest.raises(InputError, match="past the end"):
        HeaderIndex(path).get(key, version)


def test_concurrent_writers_lose_nothing(files, tmp_path):
    idx = parse_tiff(open_source(str(files["zstd-p2"])))
    path = tmp_path / "h.duckdb"
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            for i in range(4):
                HeaderIndex(path).put_many([(f"w{w}/{i}", "v", idx)])
                assert len(HeaderIndex(path)) >= i + 1  # a reader always finds a whole file
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(HeaderIndex(path)) == 12
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith((".tmp", ".wal"))]


def test_s3_object_hits_then_misses_once_rewritten(s3, s3_env, files, tmp_path):
    client = s3.client()
    client.upload_file(str(files["zstd-p2"]), BUCKET, "hdr/scene.tif")
    uri, index_path = f"s3://{BUCKET}/hdr/scene.tif", tmp_path / "h.duckdb"
    _, cold = open_rasters([uri], HeaderIndex(index_path))
    assert (cold.misses, cold.probe_requests) == (1, 0) and cold.header_bytes_fetched > 0
    (warm,), stats = open_rasters([uri], HeaderIndex(index_path))
    assert (stats.hits, stats.header_bytes_fetched, stats.probe_requests) == (1, 0, 1)
    sent = warm.source.stats()
    assert (sent.requests, sent.bytes) == (1, 0)  # the version check: one HEAD
    cfg = StreamConfig(sampler="random", patch_size=64, batch_size=8, length=16, seed=2)
    assert _patches_match(CogStream([uri], config=cfg, rasters=[warm]), [files["zstd-p2"]]) == 16
    client.upload_file(str(files["overviews"]), BUCKET, "hdr/scene.tif")  # a new ETag
    (new,), stats = open_rasters([uri], HeaderIndex(index_path))
    assert (stats.stale, stats.hits) == (1, 0)
    want = parse_tiff(open_source(str(files["overviews"])))
    assert_same_index(new.index, replace(want, uri=uri))


def test_a_secret_query_string_is_never_stored(files, tmp_path):
    secret = "S3cr3tSignatureValue"
    data = files["zstd-p2"].read_bytes()
    index_path = tmp_path / "h.duckdb"
    with RangeServer({"/c/scene.tif": data}, sig=secret) as server:
        url = f"{server.url}/c/scene.tif?sv=2024&sig={secret}"
        (r,), cold = open_rasters([url], HeaderIndex(index_path))
        assert cold.misses == 1 and secret not in r.uri
        (_,), warm = open_rasters([url], HeaderIndex(index_path))
        assert warm.hits == 1
    for p in tmp_path.iterdir():
        assert secret.encode() not in p.read_bytes(), p.name
    with duckdb.connect(str(index_path), read_only=True) as con:
        stored = repr(con.execute("SELECT * FROM headers").fetchall())
        stored += repr(con.execute("SELECT * FROM levels").fetchall())
    assert secret not in stored and "sig=***" in stored


def test_a_stream_with_a_header_index_parses_no_header_the_second_time(tmp_path):
    from ocog_lib.stream.config import StreamConfig
    from ocog_lib.stream.dataset import CogStream

    paths = []
    for i in range(3):
        p = tmp_path / f"s{i}.tif"
        write_raster(p, real_pixels(2, 256, 256, "uint16", seed=i), COMPRESS="ZSTD",
                     BLOCKSIZE=128)  # fmt: skip
        paths.append(str(p))
    cfg = StreamConfig(patch_size=64, batch_size=4, length=8, threads=1,
                       header_index=str(tmp_path / "headers.duckdb"))  # fmt: skip
    first = CogStream(paths, None, cfg)
    assert first.open_stats.misses == 3 and first.open_stats.header_bytes_fetched > 0
    second = CogStream(paths, None, cfg)
    assert second.open_stats.hits == 3 and second.open_stats.header_bytes_fetched == 0
    a, b = next(iter(first.loader())), next(iter(second.loader()))
    assert np.array_equal(a["image"].numpy(), b["image"].numpy())
    first.close()
    second.close()
