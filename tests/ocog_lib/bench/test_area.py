"""The area benchmark: ocog's read_bbox median against downloading the scenes then numpy."""

from __future__ import annotations

import pytest

from ocog_lib import results
from ocog_lib.bench.area import compare_area, format_areas
from ocog_lib.bench.tiles import TileBenchConfig, TileComparison, record_tiles
from ocog_lib.settings import Settings


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("area")
    settings = Settings(data_dir=tmp, results_db=tmp / "r.duckdb")
    cfg = TileBenchConfig(area=128, area_dates=3, repeats=2)
    return compare_area(cfg, settings), cfg, settings


def test_ocog_cold_warm_and_the_download_agree(run, tmp_path):
    (rows, notes), cfg, settings = run
    assert notes == []  # no peer asked for
    got = {(r.loader, r.state): r for r in rows}
    assert set(got) == {("ocog", "cold"), ("ocog", "warm"), ("download", "-")}
    assert all(r.location == "local" and (r.dates, r.width, r.height) == (3, 128, 128)
               and r.reducer == "median" and r.p50_ms > 0 for r in rows)  # fmt: skip
    cold, warm, dl = got[("ocog", "cold")], got[("ocog", "warm")], got[("download", "-")]
    assert dl.equal is True and cold.equal is None  # the download's output is ocog's
    assert cold.ratio_vs_ocog == 1.0 and dl.ratio_vs_ocog == pytest.approx(dl.p50_ms / cold.p50_ms)
    assert 0 < cold.bytes_read < dl.bytes_read and warm.bytes_read == 0  # tiles, not files
    assert (settings.data_dir / "timestack" / "sample-s2-128px-3d" / "stack.json").exists()
    assert "x ocog cold" in format_areas(rows)


def test_area_rows_land_in_duckdb(run):
    (rows, _), cfg, settings = run
    result = TileComparison("area-run", "x", "x", {"expression": cfg.expression}, (), (), rows)
    assert record_tiles(result, settings) == 0  # no tile rows
    _, got = results.query(settings.results_db, "SELECT loader, state, dates, equal, "
                           "config->>'$.expression' FROM area_benchmarks WHERE run_id = ?",
                           ["area-run"])  # fmt: skip
    assert sorted(got) == sorted((r.loader, r.state, 3, r.equal, cfg.expression) for r in rows)
