"""DuckDB tables as assets; every write goes through the single-slot `duckdb_writer` pool."""

import dagster as dg

from ocog_assets.defs.common import owners
from ocog_assets.defs.common.metadata import table_definition, table_written
from ocog_assets.defs.common.partitions import dataset_and_variant, dataset_variant
from ocog_assets.defs.common.pools import DUCKDB_WRITER_POOL
from ocog_assets.defs.common.resources import ResultsStore

_PREVIEW_COLUMNS = ("item", "kind", "bytes", "compression_ratio", "write_seconds",
                    "is_valid_cog", "lossless_ok")


@dg.asset(
    partitions_def=dataset_variant,
    pool=DUCKDB_WRITER_POOL,
    group_name="results",
    owners=owners.DATA,
    metadata=table_definition("variant_stats"),
    kinds={"duckdb"},
    description="Rows of the DuckDB table variant_stats for one dataset|variant (replaced on "
                "re-materialization).",
)
def variant_stats(context: dg.AssetExecutionContext, cog_variants: list[dict],
                  results: ResultsStore) -> dg.MaterializeResult:
    dataset, variant = dataset_and_variant(context)
    written = results.write_rows("variant_stats", cog_variants,
                                 replace_where={"dataset": dataset, "variant": variant})
    cols = ", ".join(_PREVIEW_COLUMNS)
    columns, rows = results.query(
        f"SELECT {cols} FROM variant_stats WHERE dataset = ? AND variant = ? ORDER BY item, kind",
        [dataset, variant],
    )
    preview = dg.MetadataValue.table(
        records=[dg.TableRecord(dict(zip(columns, r, strict=True))) for r in rows],
        schema=dg.TableSchema(columns=[
            dg.TableColumn(c, "string" if c in ("item", "kind") else
                           "bool" if c.startswith(("is_", "lossless")) else "number")
            for c in columns]),
    )
    return dg.MaterializeResult(metadata={
        **table_written("variant_stats", results.db_path, row_count=len(rows)),
        "rows_written": dg.MetadataValue.int(written),
        "preview": preview,
    })
