"""Column descriptions of the results file: types and order from the migrated schema."""

import pytest

from ocog_lib import results
from ocog_lib.errors import InputError
from ocog_lib.result_columns import describe_table


def test_columns_follow_the_migrated_schema(tmp_path):
    with results.connect(tmp_path / "r.duckdb") as con:
        actual = results.table_columns(con, "stream_benchmarks")
    docs = describe_table("stream_benchmarks")
    assert [(d.name, d.type) for d in docs] == list(actual.items())
    assert all(d.description for d in docs)


def test_an_unknown_table_names_itself():
    with pytest.raises(InputError, match="no_such_table"):
        describe_table("no_such_table")
