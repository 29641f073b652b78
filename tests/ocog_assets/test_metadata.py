"""What the UI reads off the assets: `path` on the data, rounded numbers with units, column
schemas with descriptions, owners, freshness, checks per partition."""

import math
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from ocog_assets import definitions
from ocog_assets.defs.benchmarks.assets import NIGHTLY_FRESHNESS
from ocog_assets.defs.common.io_managers import STORED_VALUE, OcogValueIOManager
from ocog_assets.defs.common.metadata import UNITS, nbytes, number
from ocog_assets.defs.common.resources import OcogPaths, ResultsStore, default_resources
from ocog_assets.defs.results.assets import variant_stats
from ocog_assets.defs.variants.assets import cog_variants
from ocog_lib import results
from ocog_lib.result_columns import describe_table

DEFS = definitions.defs
KEY = dg.MultiPartitionKey({"dataset": "sample", "variant": "default"})


def _specs() -> list[dg.AssetSpec]:
    return list(DEFS.resolve_all_asset_specs())


def _tables(spec: dg.AssetSpec) -> dict[str, dg.TableSchema]:
    """The DuckDB tables an asset declares it writes, with the schemas it declares."""
    meta = {k: getattr(v, "schema", v) for k, v in spec.metadata.items()}  # value or raw
    out = {}
    if "dagster/table_name" in meta:
        out[meta["dagster/table_name"]] = meta["dagster/column_schema"]
    out.update({k.removeprefix("column_schema/"): v for k, v in meta.items()
                if k.startswith("column_schema/")})
    return out


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    """One temporary instance for the module's run (the tests below only read it)."""
    with dg.DagsterInstance.local_temp(str(tmp_path_factory.mktemp("meta_home"))) as inst:
        yield inst


@pytest.fixture(scope="module")
def variant_run(instance, tiny_sample, tmp_path_factory
                ) -> tuple[dg.ExecuteInProcessResult, Path]:  # fmt: skip
    """cog_variants then variant_stats for sample|default with the code location's IO
    manager, once for the module; returns the run and the data folder."""
    data = tmp_path_factory.mktemp("meta_data")
    shutil.copytree(tiny_sample.prepared, data / "prepared" / "sample")
    paths = OcogPaths(data_dir=str(data), results_db=str(data / "ocog.duckdb"))
    res = dg.materialize([cog_variants, variant_stats], partition_key=str(KEY), instance=instance,
                         resources={"paths": paths, "results": ResultsStore(paths=paths),
                                    "io_manager": default_resources()["io_manager"]})
    return res, data


def test_cog_variants_path_is_the_variant_folder(variant_run, instance):
    res, data = variant_run
    meta = res.asset_materializations_for_node("cog_variants")[0].metadata
    folder = OcogPaths(data_dir=str(data)).settings().variant_dir("sample", "default")
    assert meta["path"].path == str(folder) and any(folder.rglob("*.tif"))
    # the IO manager's pickle is still there, under its own key, and fed variant_stats
    stored = Path(meta[STORED_VALUE].path)
    assert stored.is_file() and Path(instance.storage_directory()) in stored.parents
    stats = res.asset_materializations_for_node("variant_stats")[0].metadata
    assert stats["dagster/row_count"].value == meta["files"].value


def test_numbers_are_rounded_with_their_unit_in_the_key(variant_run):
    res, _ = variant_run
    meta = res.asset_materializations_for_node("cog_variants")[0].metadata
    seconds = meta["write_seconds"]
    assert isinstance(seconds, dg.FloatMetadataValue) and round(seconds.value, 2) == seconds.value
    assert meta["total_mb"].value == round(meta["total_bytes"].value / 1e6, 2)
    assert isinstance(meta["total_bytes"], dg.IntMetadataValue)  # the exact count stays


def test_written_tables_carry_their_schema_and_the_results_file_as_path(variant_run):
    res, data = variant_run
    db = data / "ocog.duckdb"
    meta = res.asset_materializations_for_node("variant_stats")[0].metadata
    assert meta["path"].path == str(db) and meta["dagster/table_name"].value == "variant_stats"
    schema = meta["dagster/column_schema"].schema
    with duckdb.connect(str(db), read_only=True) as con:
        actual = results.table_columns(con, "variant_stats")
    assert [(c.name, c.type) for c in schema.columns] == list(actual.items())
    assert all(c.description for c in schema.columns)


def test_checks_attach_to_the_materialized_partition(variant_run, instance):
    res, _ = variant_run
    evaluations = res.get_asset_check_evaluations()
    assert {e.check_name for e in evaluations} == {"cog_valid", "lossless"}
    assert {e.partition for e in evaluations} == {str(KEY)}
    for name in ("cog_valid", "lossless"):
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(cog_variants.key, name)])[dg.AssetCheckKey(cog_variants.key, name)]
        assert record.event.asset_check_evaluation.partition == str(KEY)


def test_every_column_of_every_table_an_asset_writes_is_described():
    declared = {spec.key.to_user_string(): _tables(spec) for spec in _specs()
                if "duckdb" in spec.kinds}
    assert all(declared.values()), [k for k, v in declared.items() if not v]
    for asset, tables in declared.items():
        for table, schema in tables.items():
            docs = describe_table(table)
            assert [c.name for c in schema.columns] == [d.name for d in docs], (asset, table)
            missing = [c.name for c in schema.columns if not c.description]
            assert not missing, f"{asset} writes {table}: no description for {missing}"


def test_owners_freshness_and_partitioned_checks():
    specs = _specs()
    assert all(s.owners for s in specs), [s.key for s in specs if not s.owners]
    by_key = {s.key.to_user_string(): s for s in specs}
    assert by_key["stream_benchmarks"].freshness_policy == NIGHTLY_FRESHNESS
    graph = DEFS.resolve_asset_graph()
    assert graph.asset_check_keys
    for key in graph.asset_check_keys:
        asset = by_key[key.asset_key.to_user_string()]
        assert graph.get(key).partitions_def == asset.partitions_def, key


def test_number_rounds_per_unit_and_keeps_gaps():
    assert number(21.673938502999988, "s").value == 21.67
    assert math.isnan(number(None, "dB").value) and math.isnan(number(float("nan"), "s").value)
    assert all(round(number(1 / 3, u).value, UNITS[u].digits) == number(1 / 3, u).value
               for u in UNITS)
    assert {k: v.value for k, v in nbytes("bytes", 2_345_678).items()} == {
        "bytes": 2_345_678, "size_mb": 2.35}


def test_the_code_location_uses_ocogs_io_manager():
    assert isinstance(default_resources()["io_manager"], OcogValueIOManager)
