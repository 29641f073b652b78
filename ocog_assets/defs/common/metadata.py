"""Metadata as the Dagster UI shows it well: numbers rounded, with the unit in the key (the
value stays a number, so the asset's Plots tab charts it over time), `path` on the data
itself, and the column schema of every DuckDB table an asset writes.

The UI prints a float as it is (21.673938502999988), so every measured number goes
through `number` with its unit; a byte count keeps its exact int under its own key and
gets a rounded megabyte companion beside it (total_bytes -> total_mb, bytes -> size_mb).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from ocog_lib.result_columns import describe_table


@dataclass(frozen=True)
class Unit:
    """How a quantity given in this unit is shown: rounded to `digits` decimals."""

    digits: int


UNITS = {
    "s": Unit(2), "ms": Unit(2), "MB": Unit(2), "GiB": Unit(3), "MB/s": Unit(1),
    "samples/s": Unit(1), "patches/s": Unit(1), "triplets/s": Unit(1), "bpp": Unit(4),
    "dB": Unit(2), "fraction": Unit(3), "ratio": Unit(3), "score": Unit(4), "%": Unit(1),
    "loss": Unit(4),
}


def number(value: float | None, unit: str) -> dg.FloatMetadataValue:
    """`value` in `unit`, rounded for reading; None or NaN stays NaN (a gap in the plot)."""
    spec = UNITS[unit]
    if value is None or math.isnan(value):
        return dg.MetadataValue.float(float("nan"))
    return dg.MetadataValue.float(round(float(value), spec.digits))


def nbytes(key: str, value: int) -> dict[str, dg.MetadataValue]:
    """The exact byte count under `key` and its rounded megabytes under `<key>_mb`."""
    stem = key.removesuffix("_bytes").removeprefix("bytes_")
    stem = "size" if stem == "bytes" else stem
    return {key: dg.MetadataValue.int(int(value)), f"{stem}_mb": number(value / 1e6, "MB")}


def data_path(path: str | Path) -> dict[str, dg.MetadataValue]:
    """`path`: where the asset's data lives (a folder, a file, the results file)."""
    return {"path": dg.MetadataValue.path(str(path))}


def column_schema(table: str) -> dg.TableSchema:
    """The table's columns with their DuckDB types and ocog_lib.result_columns' descriptions."""
    return dg.TableSchema(columns=[dg.TableColumn(c.name, c.type, description=c.description)
                                   for c in describe_table(table)])


def table_definition(table: str) -> dict[str, object]:
    """Definition metadata of an asset that writes `table`: the catalog shows its columns
    before the first materialization."""
    return {"dagster/table_name": table, "dagster/column_schema": column_schema(table)}


def table_written(table: str, db_path: str | Path,
                  row_count: int | None = None) -> dict[str, dg.MetadataValue | str]:
    """Materialization metadata of a DuckDB write: `path` is the results file, the table
    and its schema name what in it, `dagster/row_count` how many rows it holds."""
    meta: dict[str, dg.MetadataValue | str] = {
        **data_path(db_path), "db_path": dg.MetadataValue.path(str(db_path)),
        "dagster/table_name": table, "dagster/column_schema": column_schema(table)}
    if row_count is not None:
        meta["dagster/row_count"] = dg.MetadataValue.int(int(row_count))
    return meta


def trend(values: list[float], what: str, digits: int = 1) -> dg.MarkdownMetadataValue:
    """A series as a sparkline the UI shows in place (its full plot is behind a click),
    captioned with its range."""
    from ocog_lib.search.sparkline import sparkline_markdown

    if not values:
        return dg.MetadataValue.md(f"{what}: none")
    caption = f"{what}, in order: {min(values):.{digits}f} .. {max(values):.{digits}f}"
    return dg.MetadataValue.md(sparkline_markdown(values, caption))
