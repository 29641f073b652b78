"""Failures as JSON bodies: the status follows whose fault it is."""

from __future__ import annotations

import pytest

from ocog_lib.cube.errors import (
    ExpressionError,
    NoScenes,
    OutsideData,
    UpstreamError,
    ZoomOutside,
)
from ocog_lib.errors import InputError
from ocog_lib.serve.errors import ApiError, reply_for


@pytest.mark.parametrize("exc, sources, status, error", [
    (ApiError("tms=X", "unknown", status=404, error="unknown tms"), (), 404, "unknown tms"),
    (InputError("expression=B9", "not a band"), (), 422, "invalid input"),
    (InputError("/d/B04.tif", "truncated"), ("/d/B04.tif",), 502, "upstream read failed"),
    (OSError(5, "Input/output error"), (), 502, "upstream read failed"),
    (ZeroDivisionError("division by zero"), (), 500, "internal error"),
])  # fmt: skip
def test_status_and_body(exc, sources, status, error):
    reply = reply_for(exc, frozenset(sources))
    assert reply.status == status
    assert set(reply.body) == {"error", "input", "cause"} and reply.body["error"] == error
    assert reply.body["cause"]


def test_a_rasterio_failure_is_the_upstreams():
    from rasterio.errors import RasterioIOError

    reply = reply_for(RasterioIOError("/d/x.tif: not recognized as a supported file format"))
    assert reply.status == 502 and "/d/x.tif" in reply.body["input"]


@pytest.mark.parametrize("exc, status, error", [
    (ZoomOutside("tile 3/1/1", "zoom too coarse for a.tif"), 404, "zoom outside the data"),
    (OutsideData("bbox (0, 0, 1, 1)", "misses every scene"), 404, "outside the data"),
    (NoScenes("start=2030-01-01", "none selected"), 404, "no scenes"),
    (UpstreamError("/d/B04.tif", "GDAL cannot read it"), 502, "upstream read failed"),
    (ExpressionError("B99", "unknown band"), 422, "invalid expression"),
    (InputError("tile 1/2/3", "outside the data, zoom too coarse, no scene"), 422,
     "invalid input"),  # a plain InputError: its wording decides nothing
])  # fmt: skip
def test_cube_errors_map_by_type_not_wording(exc, status, error):
    reply = reply_for(exc)
    assert (reply.status, reply.body["error"]) == (status, error)
    assert reply.body["input"] == exc.what and reply.body["cause"] == exc.cause
    assert isinstance(exc, InputError)
