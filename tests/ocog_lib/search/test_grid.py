"""Grids: mean and std per cell over interleaved repeats, cells a config cannot take,
DuckDB rows, the heatmap and `ocog search grid`."""

import json
from pathlib import Path

import numpy as np
import pytest

from ocog_lib import results
from ocog_lib.cli.main import main
from ocog_lib.data.lineage import verify_folder
from ocog_lib.search.grid import run_grid
from ocog_lib.search.plots import save_grid_plots
from ocog_lib.search.runs import grid_with_plots
from tests.support.search import QUICK


def test_grid_cells_mean_std_and_invalid_cells(search_data, capsys, monkeypatch):
    result = grid_with_plots("sample", "local", "compression", ["none", "deflate"], "level",
                             ["1", "30"], 2, search_data, **QUICK,
                             warmup_seconds=0.05)  # fmt: skip
    by = {(c.value1, c.value2): c for c in result.cells}
    assert "level 30 outside 1..12" in by[("deflate", "30")].reason  # DEFLATE tops out at 12
    measured = [c for c in result.cells if c.reason is None]
    assert len(measured) == 3 and all(len(c.samples_per_s) == 2 for c in measured)
    for c in measured:  # lineage: the hash of the variant folder each cell streamed
        assert c.content_hash == verify_folder(search_data.variant_dir("sample",
                                                                      c.config["variant"]))
    rows = results.query(
        search_data.results_db,
        "SELECT value1, value2, repeats, mean_samples_per_s, std_samples_per_s, config, "
        "content_hash FROM grid_cells WHERE grid_id = ?",
        [result.grid_id],
    )[1]
    assert len(rows) == 4
    for v1, v2, n, mean, std, config, content in rows:
        runs = json.loads(config)["samples_per_s"]
        assert n == len(runs) and (content is not None) == bool(runs)
        if runs:
            assert mean == pytest.approx(np.mean(runs)) and std == pytest.approx(np.std(runs))
        else:
            assert (v1, v2, mean) == ("deflate", "30", None)
    heat = result.plots["heatmap"]
    assert heat == save_grid_plots(result, search_data)["heatmap"]
    assert Path(heat).parent == search_data.data_dir / "search" / "sample" / "local"

    monkeypatch.setenv("OCOG_DATA_DIR", str(search_data.data_dir))
    monkeypatch.delenv("OCOG_DUCKDB", raising=False)
    assert main(["search", "grid", "--var1", "sampler", "--var2", "block_size",
                 "--values2", "256", "--repeats", "1", "--seconds", "0.2", "--warmup",
                 "0.05", "--json"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert {(c["value1"], c["value2"]) for c in out["cells"]} == {("random", "256"),
                                                                  ("block", "256")}  # fmt: skip
    assert all(c["mean_samples_per_s"] > 0 for c in out["cells"])
    assert Path(out["plots"]["heatmap"]).exists()


def test_unknown_grid_variable_is_named(search_data):
    with pytest.raises(Exception, match="grid variable 'colour'"):
        run_grid("sample", "local", "colour", ["a"], "block_size", ["256"], 1, search_data)
    with pytest.raises(Exception, match="the two variables must differ"):
        run_grid("sample", "local", "compression", None, "codec", None, 1, search_data)
