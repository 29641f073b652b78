"""The cube as assets in-process: a composite partition's COG and metadata (preview included),
the tile benchmark's DuckDB rows, and the latest-period schedule (off by default)."""

import base64
import datetime as dt
import io
import re

import dagster as dg
import numpy as np
import pytest
import rasterio

from ocog_assets.defs.common.resources import OcogPaths, ResultsStore
from ocog_assets.defs.cubes.assets import (
    NDVI,
    TileBenchmarksConfig,
    cube_path,
    tile_benchmarks,
    virtual_cubes,
)
from ocog_assets.defs.cubes.partitions import (
    AREAS,
    L8_AREA,
    PERIODS,
    S2_AREA,
    latest_period,
    period_of,
)
from ocog_assets.defs.cubes.schedules import latest_virtual_cubes
from ocog_lib import results
from ocog_lib.cube.reads import read_bbox
from ocog_lib.cube.stack import SceneStack
from ocog_lib.data.timestack import build_time_stack
from ocog_lib.settings import Settings


def _resources(settings: Settings) -> dict:
    paths = OcogPaths(data_dir=str(settings.data_dir))
    return {"paths": paths, "results": ResultsStore(paths=paths)}


def _small_s2(settings: Settings, dates: int) -> SceneStack:
    """The sample's Sentinel-2 stack at 128 px, where the assets look for it (reused as is)."""
    return SceneStack.load(build_time_stack(settings.data_dir / "timestack" / S2_AREA,
                                            dates=dates, size=128))  # fmt: skip


def _cube(instance, settings, key: str, **kw) -> dg.ExecuteInProcessResult:
    return dg.materialize([virtual_cubes], partition_key=key, instance=instance,
                          resources=_resources(settings), **kw)  # fmt: skip


def _preview(md: str) -> np.ndarray:
    from PIL import Image

    (b64,) = re.findall(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", md)
    with Image.open(io.BytesIO(base64.b64decode(b64))) as im:
        assert im.mode == "RGBA"
        return np.asarray(im)


def test_a_composite_partition_is_a_cog_with_its_metadata_and_preview(instance):
    settings = Settings.from_env()
    stack = _small_s2(settings, dates=12)
    assert {period_of(s.datetime) for s in stack.scenes} == set(PERIODS)
    assert period_of(stack.scenes[-1].datetime) == latest_period(S2_AREA)

    res = _cube(instance, settings, f"{S2_AREA}|2024-Q3")
    meta = res.asset_materializations_for_node("virtual_cubes")[0].metadata
    path = cube_path(settings, S2_AREA, "2024-Q3")
    assert meta["cog_path"].path == str(path)
    with rasterio.open(path) as ds:
        data, nodata, dtype = ds.read(1), ds.nodata, ds.dtypes[0]
    assert dtype == "float32" and np.isnan(nodata)
    cube = read_bbox(stack, tuple(meta["bbox"].value), crs=meta["crs"].value,
                     resolution=meta["resolution"].value, expression=NDVI, reducer="median",
                     start="2024-07-01", end="2024-09-30")  # fmt: skip
    np.testing.assert_array_equal(data, cube.data)
    in_q3 = [s.id for s in stack.scenes if 7 <= s.datetime.month <= 9]
    assert meta["scenes"].value == in_q3 and meta["scene_count"].value == 3
    assert meta["valid_fraction"].value == pytest.approx(np.isfinite(data).mean())
    assert meta["shape"].value == [128, 128] and meta["bytes"].value == path.stat().st_size
    assert meta["compute_ms"].value > 0
    assert (meta["expression"].value, meta["reducer"].value) == (NDVI, "median")
    assert (meta["start"].value, meta["end"].value) == ("2024-07-01", "2024-09-30")
    rgba = _preview(meta["preview"].value)
    assert rgba.shape == (128, 128, 4)
    np.testing.assert_array_equal(rgba[..., 3] == 0, np.isnan(data))

    # the Landsat area: built on first use; its one scene is in Q2, Q1 has none
    res = _cube(instance, settings, f"{L8_AREA}|2024-Q2")
    meta = res.asset_materializations_for_node("virtual_cubes")[0].metadata
    l8 = SceneStack.load(settings.data_dir / "timestack" / L8_AREA)
    assert meta["scenes"].value == [l8.scenes[0].id]
    assert period_of(l8.scenes[0].datetime) == latest_period(L8_AREA)
    failed = _cube(instance, settings, f"{L8_AREA}|2024-Q1", raise_on_error=False)
    (failure,) = failed.get_step_failure_events()
    message = failure.step_failure_data.error.to_string()
    assert "start=2024-01-01" in message and "no scene" in message
    assert not cube_path(settings, L8_AREA, "2024-Q1").exists()


def test_tile_benchmarks_records_its_rows_in_duckdb(instance):
    settings = Settings.from_env()
    _small_s2(settings, dates=3)
    config = dg.RunConfig({"tile_benchmarks": TileBenchmarksConfig(tiles=2, repeats=1)})
    res = dg.materialize([tile_benchmarks], instance=instance, resources=_resources(settings),
                         run_config=config)  # fmt: skip
    meta = res.asset_materializations_for_node("tile_benchmarks")[0].metadata
    _, rows = results.query(settings.results_db, "SELECT loader, zoom, state, equal, tiles "
                            "FROM tile_benchmarks WHERE run_id = ?", [meta["run_id"].value])
    assert len(rows) == meta["rows_written"].value == meta["dagster/row_count"].value
    assert len(meta["rows"].value.records) == len(rows)
    assert {r[0] for r in rows} >= {"ocog", "rio-tiler"} and {r[2] for r in rows} == {"cold",
                                                                                     "warm"}
    nearest = [r for r in rows if r[0] == "ocog"]
    assert nearest and all(r[3] is True and r[4] >= 1 for r in nearest)  # same pixels
    side = meta["side_by_side"].value
    assert side.startswith("```") and "rio-tiler p50/p95 ms" in side


def test_latest_schedule_is_off_and_asks_for_each_areas_latest_period():
    assert latest_virtual_cubes.default_status == dg.DefaultScheduleStatus.STOPPED
    from ocog_assets.definitions import defs

    ctx = dg.build_schedule_context(scheduled_execution_time=dt.datetime(2026, 11, 22, 4),
                                    repository_def=defs.get_repository_def())  # fmt: skip
    requests = list(latest_virtual_cubes.evaluate_tick(ctx).run_requests)
    assert [r.partition_key for r in requests] == [f"{S2_AREA}|2024-Q4", f"{L8_AREA}|2024-Q2"]
    assert [r.run_key for r in requests] == [f"2026-11-22-{a}" for a in AREAS]
    assert defs.resolve_job_def("virtual_cubes_job").partitions_def.get_partition_keys() == [
        f"{a}|{p}" for a in AREAS for p in PERIODS]
