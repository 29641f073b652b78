"""The GDAL fallback path over http(s) with a SAS `sig`: no secret in any error, cause,
repr or log record, and a failed read is an InputError naming the file (so "skip" works).

A real loopback server serves a JPEG-compressed GeoTIFF (a layout only GDAL decodes)
behind `?sv=...&sig=SECRETVALUE`; reads then fail the way a store fails: the object is
cut short, the SAS expires (403), or the store answers 500.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from ocog_lib.errors import InputError
from ocog_lib.stream.dataset import make_stream
from ocog_lib.stream.rasters import open_raster
from tests.support.rangeserver import RangeServer
from tests.support.rasters import real_pixels, write_raster

SECRET = "SECRETVALUE"
PATCH = 128


@pytest.fixture(scope="module")
def jpeg(tmp_path_factory):
    """512 px, 3 bands, JPEG in 64 px tiles: 40 kB, more than GDAL's first 16 kB read."""
    path = tmp_path_factory.mktemp("fallback") / "scene.tif"
    arr = real_pixels(3, 512, 512, "uint8", seed=2)
    return write_raster(
        path, arr, driver="GTiff", compress="JPEG", tiled=True, blockxsize=64, blockysize=64
    )


@pytest.fixture
def logs(caplog):
    """Every record at DEBUG, GDAL's own debug messages included (CPL_DEBUG)."""
    caplog.set_level(logging.DEBUG)
    for name in ("rasterio", "rasterio._env", "rasterio._base", "rasterio._io", "urllib3"):
        caplog.set_level(logging.DEBUG, logger=name)
    # EMPTY_DIR: GDAL's directory listing at open can hold the GIL, and then this
    # process's own server never answers it
    with rasterio.Env(CPL_DEBUG="ON", GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
        yield caplog


def _gate(server: RangeServer, status: int, when) -> None:
    """From now on the server answers `status` to every request for which `when(handler)`."""
    base = server._server.RequestHandlerClass

    class Gated(base):
        def do_GET(self):  # noqa: N802
            if when(self):
                self._reply(status, b"<Error><Code>Boom</Code></Error>", {})
                return
            super().do_GET()

        do_HEAD = do_GET

    server._server.RequestHandlerClass = Gated


def _chain(exc: BaseException):
    seen = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _assert_clean(exc: BaseException, logs) -> None:
    for e in _chain(exc):
        assert SECRET not in str(e) and SECRET not in repr(e), type(e)
    _assert_logs_clean(logs)


def _assert_logs_clean(logs) -> None:
    assert logs.records, "no log record captured: the check would be empty"
    for rec in logs.records:
        assert SECRET not in rec.getMessage(), (rec.name, rec.getMessage())
        assert SECRET not in str(rec.msg) and SECRET not in repr(rec.args), rec.name


def _stream(url, **kw):
    cfg = dict(patch_size=PATCH, batch_size=4, length=16, seed=1, threads=2, prefetch=1)
    return make_stream([url], **{**cfg, **kw})


def _break(server: RangeServer, data: bytes, how: str) -> None:
    if how == "truncated":  # the object was cut short after its header was read
        server.files["/scene.tif"] = data[: len(data) // 2]
    elif how == "expired":  # the SAS expired: every later request is refused
        server.sig = "a-newer-signature"
    else:  # the store fails every range past the first 16 kB
        _gate(server, 500, lambda h: not h.headers.get("Range", "").startswith("bytes=0-"))


def test_intact_reads_are_right_and_log_no_secret(jpeg, logs):
    with RangeServer({"/scene.tif": jpeg.read_bytes()}, sig=SECRET) as srv:
        url = f"{srv.url}/scene.tif?sv=2024-01-01&sig={SECRET}"
        stream = _stream(url)
        assert not stream.rasters[0].fast  # JPEG: the GDAL fallback path
        assert SECRET not in repr(stream.rasters[0]) and SECRET not in str(stream.rasters)
        n = 0
        with rasterio.open(jpeg) as ds:
            for batch in stream:
                for b, (_, row, col) in enumerate(batch["window"].tolist()):
                    want = ds.read(window=Window(col, row, PATCH, PATCH))
                    np.testing.assert_array_equal(batch["image"][b].numpy(), want)
                    n += 1
        assert n == 16
        stream.close()
    _assert_logs_clean(logs)


@pytest.mark.parametrize("how", ["truncated", "expired", "500"])
def test_failed_fallback_read_names_the_file_and_leaks_nothing(jpeg, logs, how):
    data = jpeg.read_bytes()
    with RangeServer({"/scene.tif": data}, sig=SECRET) as srv:
        url = f"{srv.url}/scene.tif?sv=2024-01-01&sig={SECRET}"
        stream = _stream(url)
        _break(srv, data, how)
        with pytest.raises(InputError) as err:
            for _ in stream:
                pass
        stream.close()
    assert err.value.what == f"{srv.url}/scene.tif?sv=2024-01-01&sig=***"
    assert "\n" not in str(err.value)
    _assert_clean(err.value, logs)


@pytest.mark.parametrize("how", ["truncated", "expired"])
def test_skip_leaves_out_unreadable_fallback_windows(jpeg, logs, how):
    data = jpeg.read_bytes()
    with RangeServer({"/scene.tif": data}, sig=SECRET) as srv:
        url = f"{srv.url}/scene.tif?sv=2024-01-01&sig={SECRET}"
        stream = _stream(url, on_error="skip")
        _break(srv, data, how)
        got = 0
        with rasterio.open(jpeg) as ds:
            for batch in stream:  # what does come back is right
                for b, (_, row, col) in enumerate(batch["window"].tolist()):
                    want = ds.read(window=Window(col, row, PATCH, PATCH))
                    np.testing.assert_array_equal(batch["image"][b].numpy(), want)
                    got += 1
        stream.close()
    assert stream.stats.skipped > 0 and got + stream.stats.skipped == 16
    _assert_logs_clean(logs)


def test_gdal_refusing_to_open_leaks_nothing(jpeg, logs):
    """The fast path reads the header, then GDAL (its own client) is refused."""
    with RangeServer({"/scene.tif": jpeg.read_bytes()}, sig=SECRET) as srv:
        _gate(srv, 403, lambda h: h.headers.get("User-Agent", "").startswith("GDAL"))
        url = f"{srv.url}/scene.tif?sv=2024-01-01&sig={SECRET}"
        with pytest.raises(InputError) as err:
            open_raster(url)
    assert err.value.what.endswith("sig=***")
    _assert_clean(err.value, logs)


def test_results_store_no_url_secret_in_any_column(tmp_path):
    """What reaches DuckDB (a text column naming the source, an error quoting it, the
    config) is redacted, presigned-S3 `Signature=` as well as Azure `sig=`."""
    from ocog_lib import results

    sas = f"https://acct.blob.core.windows.net/c/x.tif?sv=2024&sig={SECRET}"
    presigned = f"https://b.s3.amazonaws.com/x.tif?AWSAccessKeyId=AKIA1&Signature={SECRET}&e=1"
    row = {
        "run_id": "r1",
        "storage": sas,
        "name": f"GDAL cannot read window 0,0 ({presigned})",
        "config": {"images": [sas, presigned]},
    }
    db = tmp_path / "results.duckdb"
    assert results.write_rows(db, "stream_benchmarks", [row]) == 1
    _, rows = results.query(db, "SELECT storage, name, config FROM stream_benchmarks")
    assert len(rows) == 1 and SECRET not in repr(rows)
    assert rows[0][0] == "https://acct.blob.core.windows.net/c/x.tif?sv=2024&sig=***"


def test_refused_fast_path_chains_no_error_that_quotes_the_url(jpeg, logs):
    """The fast path's own client refused (a wrong SAS): the InputError is the whole story,
    with no urllib3/_Fatal error riding along as its __context__."""
    with RangeServer({"/scene.tif": jpeg.read_bytes()}, sig="the-right-one") as srv:
        with pytest.raises(InputError, match="403") as err:
            open_raster(f"{srv.url}/scene.tif?sv=2024-01-01&sig={SECRET}")
    assert err.value.__cause__ is None and err.value.__context__ is None
    _assert_clean(err.value, logs)


def test_log_redaction_is_installed_once_and_covers_every_rasterio_logger():
    from ocog_lib.secrets import install_log_redaction

    factory = logging.getLogRecordFactory()
    install_log_redaction()
    assert logging.getLogRecordFactory() is factory  # idempotent: not wrapped twice
    for name in ("rasterio", "rasterio._env", "rasterio.some.future_module", "urllib3.x"):
        rec = logging.getLogger(name).makeRecord(
            name, logging.DEBUG, __file__, 1, "GET %s", (f"/x.tif?sv=1&sig={SECRET}",), None
        )
        assert rec.getMessage() == "GET /x.tif?sv=1&sig=***"
    # what logging.makeLogRecord (dagster's log manager among its callers) asks for
    assert logging.makeLogRecord({"msg": "plain"}).getMessage() == "plain"
