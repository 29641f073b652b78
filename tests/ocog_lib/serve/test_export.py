"""`GET /export` for real: the COG a server streams equals `read_bbox` on the same
arguments (pixels bit for bit, NaN positions included, and georeferencing), is a valid COG,
and leaves nothing in the export folder; too large is a 413, outside the data a 404."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import requests

from ocog_lib.serve.config import DEFAULT_EXPRESSION

pytestmark = pytest.mark.slow


def _stack(server):
    from ocog_lib.cube.stack import SceneStack

    return SceneStack.load(server.stack)


def _grid(server) -> tuple[str, tuple[float, float, float, float], float]:
    """The stack's CRS, bounds and resolution (its first band file)."""
    import rasterio

    stack = _stack(server)
    with rasterio.open(stack.uri(stack.scenes[0], "B04")) as ds:
        return ds.crs.to_string(), tuple(ds.bounds), ds.res[0]


def _export(server, tmp_path: Path, **params) -> tuple[requests.Response, Path]:
    resp = requests.get(f"{server.url}/export", params=params, timeout=120)
    path = tmp_path / "export.tif"
    path.write_bytes(resp.content)
    return resp, path


def _assert_no_files_left(server) -> None:
    folder = server.data_dir / "serve" / "exports"
    assert not folder.exists() or list(folder.iterdir()) == []


@pytest.mark.parametrize("params, library", [
    ({}, {"expression": DEFAULT_EXPRESSION, "reducer": "median"}),
    ({"expression": "nir", "reducer": "percentile", "p": "90", "start": "2024-05-01"},
     {"expression": "nir", "reducer": "percentile", "p": 90.0, "start": "2024-05-01"}),
])  # fmt: skip
def test_export_equals_read_bbox_bit_for_bit(server, tmp_path, params, library):
    import rasterio

    from ocog_lib.cog.validate import validate_cog
    from ocog_lib.cube.reads import read_bbox

    crs, (left, bottom, right, top), res = _grid(server)
    # a box over the data's north-west part reaching past its west and north edges (NaN)
    bbox = (left - 305, bottom + 1000, left + 1500, top + 195)
    resp, path = _export(server, tmp_path, bbox=",".join(map(str, bbox)), bbox_crs=crs,
                         **params)  # fmt: skip
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "image/tiff"
    assert "attachment" in resp.headers["Content-Disposition"]
    want = read_bbox(_stack(server), bbox, crs=crs, resolution=res, **library)
    assert resp.headers["X-Scenes"] == str(len(want.scenes))
    assert float(resp.headers["X-Compute-Ms"]) >= 0
    check = validate_cog(path)
    assert check.valid, check.errors
    with rasterio.open(path) as ds:
        got = ds.read(1)
        assert ds.dtypes == ("float32",) and np.isnan(ds.nodata)
        assert ds.compression.name.lower() == "deflate" and ds.overviews(1)
        assert ds.transform == want.transform and ds.crs == rasterio.crs.CRS.from_user_input(
            want.crs)  # fmt: skip
    nan = np.isnan(want.data)
    assert nan.any() and not nan.all()
    np.testing.assert_array_equal(got, want.data)
    _assert_no_files_left(server)


def test_lonlat_box_lands_in_the_stack_crs_at_native_resolution(server, tmp_path):
    import rasterio
    from rasterio.warp import transform_bounds

    from ocog_lib.cube.reads import read_bbox

    crs, bounds, res = _grid(server)
    west, south, east, north = transform_bounds(crs, "EPSG:4326", *bounds)
    box = (west + (east - west) / 4, south + (north - south) / 4, east - (east - west) / 4,
           north - (north - south) / 4)  # fmt: skip
    resp, path = _export(server, tmp_path, bbox=",".join(map(repr, box)))
    assert resp.status_code == 200, resp.text
    in_crs = transform_bounds("EPSG:4326", crs, *box, densify_pts=21)
    want = read_bbox(_stack(server), in_crs, crs=crs, resolution=res,
                     expression=DEFAULT_EXPRESSION)  # fmt: skip
    with rasterio.open(path) as ds:
        assert ds.crs.to_string() == crs and ds.res == (res, res)
        assert ds.transform == want.transform
        np.testing.assert_array_equal(ds.read(1), want.data)
    _assert_no_files_left(server)


def _assert_error(resp: requests.Response, status: int, named: str, error: str) -> None:
    assert resp.status_code == status, resp.content[:300]
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error", "input", "cause"} and body["error"] == error, body
    assert named in body["input"] and body["cause"], body


def test_too_large_is_a_413_before_any_read(server, tmp_path):
    crs, (left, bottom, right, top), _ = _grid(server)
    # 100 km at 1 m: 10^10 px, refused by arithmetic (a read would run out of memory)
    bbox = f"{left},{bottom},{left + 100_000},{bottom + 100_000}"
    resp, _ = _export(server, tmp_path, bbox=bbox, bbox_crs=crs, resolution="1")
    _assert_error(resp, 413, "bbox=", "export too large")
    assert "max_export_pixels" not in resp.text and "16777216" in resp.json()["cause"]
    _assert_no_files_left(server)


def test_outside_the_data_and_bad_boxes_answer_json(server, tmp_path):
    crs, (left, bottom, right, top), _ = _grid(server)
    beside = f"{right + 5000},{bottom},{right + 6000},{top}"
    resp, _ = _export(server, tmp_path, bbox=beside, bbox_crs=crs)
    _assert_error(resp, 404, "bbox", "outside the data")
    _assert_error(_export(server, tmp_path, bbox="1,2,3")[0], 400, "bbox=1,2,3", "bad bbox")
    _assert_error(_export(server, tmp_path, bbox="0,0,1,1", bbox_crs="EPSG:0")[0], 422,
                  "bbox_crs=EPSG:0", "bad bbox_crs")  # fmt: skip
    _assert_error(_export(server, tmp_path, bbox="-75.6,38.6,-75.5,38.7",
                          start="2030-01-01")[0], 404, "start=2030-01-01", "no scenes")
    _assert_error(_export(server, tmp_path, bbox="-75.6,38.6,-75.5,38.7",
                          expression="B99")[0], 422, "B99", "invalid expression")
    assert requests.get(f"{server.url}/healthz", timeout=10).json()["status"] == "ok"
    _assert_no_files_left(server)
