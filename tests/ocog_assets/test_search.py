"""search_results and grid_results as assets: rows in DuckDB, plots in metadata and on disk."""

import shutil
from pathlib import Path

import dagster as dg
import pytest

from ocog_assets.defs.common.pools import BENCHMARK_POOL
from ocog_assets.defs.common.resources import OcogPaths
from ocog_assets.defs.search.assets import GridConfig, SearchConfig, grid_results, search_results
from ocog_lib import results
from tests.support.benchdata import make_bench_variants

KEY = str(dg.MultiPartitionKey({"dataset": "sample", "storage": "local"}))


@pytest.fixture
def settings(tmp_path):
    """Bench variants of the sample in tmp/data; the optimal local one is its prepared data."""
    settings = make_bench_variants(tmp_path / "data", 512)
    local = settings.variant_dir("sample", "optimal_local")
    shutil.copytree(local, settings.prepared_dir("sample"))
    return settings


def _materialize(asset, config, inst, settings):
    return dg.materialize(
        [asset],
        partition_key=KEY,
        instance=inst,
        resources={"paths": OcogPaths(data_dir=str(settings.data_dir))},
        run_config=dg.RunConfig({asset.key.path[-1]: config}),
    )


def test_search_results_asset(instance, settings):
    config = SearchConfig(trials=2, seconds=0.2, warmup_seconds=0.05, max_workers=0)
    res = _materialize(search_results, config, instance, settings)
    meta = res.asset_materializations_for_node("search_results")[0].metadata
    study = meta["study"].value
    assert meta["trials"].value == 6 + 2  # the named profiles' six configs, then the search
    assert meta["best_samples_per_s"].value >= meta["best_named_samples_per_s"].value
    assert meta["best_config"].value["variant"]
    assert "data:image/png;base64," in meta["trials_plot"].value
    plot = Path(meta["trials_plot_path"].value)
    assert plot.parent == settings.data_dir / "search" / "sample" / "local" and plot.exists()
    cols, rows = results.query(
        settings.results_db, "SELECT * FROM best_configs WHERE dataset = 'sample'"
    )
    best = dict(zip(cols, rows[0], strict=True))
    assert best["study"] == study and best["storage"] == "local"
    # the metadata is rounded to 0.1 samples/s (ocog_assets/defs/common/metadata.py)
    assert best["samples_per_s"] == pytest.approx(meta["best_samples_per_s"].value, abs=0.05)


def test_grid_results_asset(instance, settings):
    config = GridConfig(var1="compression", var2="sampler",
                        values={"compression": ["none", "zstd"], "sampler": ["random"]},
                        repeats=1, seconds=0.2, warmup_seconds=0.05)  # fmt: skip
    res = _materialize(grid_results, config, instance, settings)
    meta = res.asset_materializations_for_node("grid_results")[0].metadata
    cells = meta["cells"].value.records
    assert {(c.data["compression"], c.data["sampler"]) for c in cells} == {
        ("none", "random"), ("zstd", "random")
    }  # fmt: skip
    assert all(c.data["mean_samples_per_s"] > 0 for c in cells)
    assert "data:image/png;base64," in meta["heatmap"].value
    n = results.query(settings.results_db, "SELECT count(*) FROM grid_cells WHERE grid_id = ?",
                      [meta["grid_id"].value])[1][0][0]  # fmt: skip
    assert n == 2


def test_search_assets_share_the_benchmark_pool_and_partitions():
    from ocog_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    for asset in (search_results, grid_results):
        node = graph.get(asset.key)
        assert node.pools == {BENCHMARK_POOL}
        keys = node.partitions_def.get_partition_keys()
        assert {"sample|local", "sample|remote"} <= set(keys)
