"""W-tiles: ocog's cube tiles vs rio-tiler's over a small derived stack (no wall-clock checks)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ocog_lib import results
from ocog_lib.bench.tile_readers import LOADER_CLASSES, RioTilerTiles
from ocog_lib.bench.tiles import (
    TileBenchConfig,
    compare_tiles,
    default_zooms,
    format_tiles,
    record_tiles,
    rio_expression,
)
from ocog_lib.cli.main import main
from ocog_lib.cube.stack import SceneStack
from ocog_lib.data.lineage import verify_folder
from ocog_lib.data.timestack import build_time_stack
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings


@pytest.fixture(scope="module")
def stack_json(tmp_path_factory):
    return build_time_stack(tmp_path_factory.mktemp("tiles") / "stack", dates=3, size=256)


@pytest.fixture(scope="module")
def zooms(stack_json):
    zs = default_zooms(SceneStack.load(stack_json), "WebMercatorQuad")
    assert len(zs) == 3 and zs[2] == zs[1] + 1 and zs[0] < zs[1]
    return zs[1:]  # native and one finer: two zooms keep the test short


@pytest.fixture(scope="module")
def run(stack_json, zooms, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("db")
    settings = Settings(data_dir=tmp, results_db=tmp / "r.duckdb")
    cfg = TileBenchConfig(stack=str(stack_json), zooms=zooms, tiles=2, repeats=1,
                          resamplings=("nearest", "bilinear"))  # fmt: skip
    return compare_tiles(cfg, settings), settings


def test_rows_for_both_loaders_and_states_and_equal(run, zooms):
    result, _ = run
    keys = {(r.loader, r.zoom, r.state, r.resampling) for r in result.rows}
    assert keys == {(lo, z, s, m) for lo in ("ocog", "rio-tiler") for z in zooms
                    for s in ("cold", "warm") for m in ("nearest", "bilinear")}  # fmt: skip
    assert all(r.equal is True and r.max_abs_diff == 0.0 for r in result.rows)
    assert all(r.location == "local" and r.wire_bytes_per_tile is None and r.limit_ms is None
               for r in result.rows)  # fmt: skip
    result = replace(result, rows=tuple(r for r in result.rows if r.resampling == "nearest"))
    assert all(1 <= r.tiles <= 2 and r.p50_ms > 0 and r.p95_ms >= r.p50_ms for r in result.rows)
    assert max(r.tiles for r in result.rows) == 2
    by = {(r.loader, r.zoom, r.state): r for r in result.rows}
    for z in zooms:
        cold, warm = by[("ocog", z, "cold")], by[("ocog", z, "warm")]
        assert cold.bytes_per_tile > 0 and warm.bytes_per_tile <= cold.bytes_per_tile
        assert by[("rio-tiler", z, "cold")].bytes_per_tile is None
        assert by[("rio-tiler", z, "warm")].ratio_vs_rio_tiler == 1.0
    text = format_tiles(result)
    assert result.run_id in text and "rio-tiler p50/p95 ms" in text


def test_rows_land_in_duckdb(run):
    result, settings = run
    assert record_tiles(result, settings) == len(result.rows)
    with results.connect(settings.results_db, read_only=True) as con:
        cols = results.table_columns(con, "tile_benchmarks")
        got = con.execute(
            "SELECT loader, state, equal, bytes_per_tile, config->>'$.reducer', content_hash "
            "FROM tile_benchmarks WHERE run_id = ?",
            [result.run_id],
        ).fetchall()
    assert {"run_id", "measured_at", "git_sha", "host", "dataset", "loader", "zoom", "tiles",
            "state", "p50_ms", "p95_ms", "bytes_per_tile", "equal", "config",
            "ratio_vs_rio_tiler", "location", "resampling", "wire_bytes_per_tile", "limit_ms",
            "ratio_vs_limit"} <= set(cols)  # fmt: skip
    assert cols["measured_at"] == "TIMESTAMP WITH TIME ZONE" and cols["equal"] == "BOOLEAN"
    assert len(got) == len(result.rows) and all(e is True and m == "median"
                                                for _, _, e, _, m, _ in got)  # fmt: skip
    # lineage: the stack folder's content hash, written with the stack
    stack = Path(result.stack)
    assert {h for *_, h in got} == {verify_folder(stack)} == {result.content_hash}


def test_rio_expression_names_bands_by_position():
    aliases = {"red": "B04", "nir": "B08"}
    assert rio_expression("(nir-red)/(nir+red)", ["B04", "B08"], aliases) == "(b2-b1)/(b2+b1)"
    assert rio_expression("where(B08>1e3, B08, 0)", ["B08"], aliases) == "where(b1>1e3, b1, 0)"


def test_cli_json_no_record(stack_json, zooms, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OCOG_DATA_DIR", str(tmp_path))
    rc = main(["bench", "tiles", "--stack", str(stack_json), "--zooms", str(zooms[0]),
               "--tiles", "1", "--repeats", "1", "--json", "--no-record"])  # fmt: skip
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert {r["loader"] for r in doc["rows"]} == {"ocog", "rio-tiler"}
    assert all(r["equal"] is True for r in doc["rows"]) and doc["config"]["zooms"] == [zooms[0]]
    assert not (tmp_path / "ocog.duckdb").exists()


class _Shifted(RioTilerTiles):
    """rio-tiler's tiles with one pixel moved by 1e-3: outputs that differ."""

    def __call__(self, z, x, y):
        data, n = super().__call__(z, x, y)
        data = data.copy()
        finite = np.flatnonzero(np.isfinite(data))
        data.flat[finite[0]] += 1e-3
        return data, n


def test_no_speed_for_outputs_that_differ(stack_json, zooms, tmp_path, monkeypatch):
    monkeypatch.setitem(LOADER_CLASSES, "rio-tiler", _Shifted)
    settings = Settings(data_dir=tmp_path, results_db=tmp_path / "r.duckdb")
    cfg = TileBenchConfig(stack=str(stack_json), zooms=zooms[:1], tiles=1, repeats=1,
                          resamplings=("nearest", "bilinear"))  # fmt: skip
    rows = compare_tiles(cfg, settings).rows
    assert {r.resampling for r in rows} == {"nearest", "bilinear"} and len(rows) == 8
    for r in rows:  # bilinear too: every input band is identical, so the output must be
        assert r.equal is False and r.p50_ms is r.p95_ms is r.ratio_vs_rio_tiler is None
        assert r.max_abs_diff == pytest.approx(1e-3, rel=1e-3)
        assert r.note.startswith("outputs differ from rio-tiler's")


def test_bad_config_names_the_input(stack_json):
    settings = Settings.from_env()
    for cfg, what in [(TileBenchConfig(locations=("mars",)), "locations=mars"),
                      (TileBenchConfig(resamplings=("cubic",)), "resampling=cubic"),
                      (TileBenchConfig(peers=("titiler",)), "peers=titiler"),
                      (TileBenchConfig(area=32), "area=32"),
                      (TileBenchConfig(cap_mb_s=0), "cap_mb_s=0")]:  # fmt: skip
        with pytest.raises(InputError) as exc:
            compare_tiles(cfg, settings)
        assert what in str(exc.value)


def test_band_check_compares_every_input_band(stack_json, zooms):
    from ocog_lib.bench.tile_readers import band_dn_diff, max_abs_diff
    from ocog_lib.bench.tiles import tiles_inside
    from ocog_lib.cube.expression import Expression

    stack = SceneStack.load(stack_json)
    expr = Expression.parse("(nir-red)/(nir+red)", stack.bands, stack.aliases)
    tiles = tiles_inside(stack, "WebMercatorQuad", zooms[0], 1)
    assert band_dn_diff(stack, expr, tiles, zooms[0], "WebMercatorQuad", 256, "bilinear") == 0.0
    a = np.array([[1.0, np.nan], [3.0, 4.0]], np.float32)
    assert max_abs_diff(a, a + np.float32(0.5)) == 0.5
    assert max_abs_diff(a, np.zeros_like(a)) == float("inf")  # NaN in other places
