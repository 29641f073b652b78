"""`ocog query` / results.query: one read-only statement over the results, nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocog_lib import results
from ocog_lib.cli.main import main
from ocog_lib.errors import InputError

SECRET_FILE = "/etc/passwd"


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """One results file for the module: every test leaves it as it was (and checks so)."""
    db = tmp_path_factory.mktemp("results") / "r.duckdb"
    results.write_rows(db, "variant_stats", [
        {"dataset": "sample", "variant": "default", "item": "bench_00", "kind": "image",
         "bytes": 400, "is_valid_cog": True}])
    results.write_rows(db, "training_runs", [
        {"run": "r1", "dataset": "sample", "loader_config": "local-default", "step": s,
         "seconds": 2.0 * s, "miou": 0.1 * s, "samples_per_s": 50.0, "device": "cpu",
         "config": {"lr": 0.01}} for s in (1, 2)])
    return db


def _cli_error(capsys, db: Path, sql: str) -> str:
    """Run `ocog query`; it must fail with one line on stderr and print nothing."""
    assert main(["query", "--db", str(db), sql]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("ocog: error: ") and captured.err.count("\n") == 1, captured.err
    return captured.err


@pytest.mark.parametrize("sql", ["", "   \n", "-- only a comment", "/* a comment */ ;"])
def test_empty_or_comment_only_query_is_named(db, capsys, sql):
    err = _cli_error(capsys, db, sql)
    assert err.startswith("ocog: error: query ") and "empty" in err


@pytest.mark.parametrize("sql", ["select 1; select 2", "select 1; drop table variant_stats"])
def test_more_than_one_statement_is_refused(db, capsys, sql):
    assert "2 statements" in _cli_error(capsys, db, sql)
    assert results.query(db, "SELECT count(*) FROM variant_stats")[1] == [(1,)]


@pytest.mark.parametrize(("sql", "kind"), [
    ("INSERT INTO variant_stats (dataset, variant, item, kind) VALUES ('a', 'b', 'c', 'd')",
     "INSERT"),
    ("UPDATE variant_stats SET bytes = 0", "UPDATE"),
    ("DELETE FROM variant_stats", "DELETE"),
    ("CREATE TABLE t AS SELECT 1", "CREATE"),
    ("DROP TABLE variant_stats", "DROP"),
    ("ATTACH 'other.duckdb' AS o", "ATTACH"),
    ("COPY variant_stats TO 'out.csv'", "COPY"),
    ("COPY (SELECT * FROM variant_stats) TO 'out.parquet' (FORMAT parquet)", "COPY"),
    ("EXPORT DATABASE 'dump'", "EXPORT"),
    ("INSTALL httpfs", "INSTALL/LOAD"),
    ("LOAD httpfs", "INSTALL/LOAD"),
    ("SET threads = 1", "SET"),
    ("PRAGMA threads = 1", "SET"),
    ("PRAGMA enable_profiling", "PRAGMA"),
    ("CALL pragma_version()", "CALL"),
])
def test_writes_files_extensions_and_settings_are_refused(db, capsys, tmp_path, monkeypatch,
                                                          sql, kind):
    monkeypatch.chdir(tmp_path)
    err = _cli_error(capsys, db, sql)
    assert f"{kind} refused" in err and "read-only" in err, err
    assert list(tmp_path.iterdir()) == []  # no file appeared
    assert results.query(db, "SELECT bytes FROM variant_stats")[1] == [(400,)]


@pytest.mark.parametrize("sql", [
    f"SELECT * FROM read_csv('{SECRET_FILE}')",
    f"SELECT * FROM read_text('{SECRET_FILE}')",
    f"SELECT * FROM read_blob('{SECRET_FILE}')",
    "SELECT * FROM read_parquet('/tmp/*.parquet')",
    "SELECT * FROM glob('/etc/*')",
    f"SELECT count(*) FROM (SELECT * FROM read_csv_auto('{SECRET_FILE}'))",
])
def test_file_access_is_refused(db, capsys, sql):
    err = _cli_error(capsys, db, sql)
    assert "outside the results file" in err and "root:" not in err, err
    with pytest.raises(InputError, match="outside the results file"):
        results.query(db, sql)


@pytest.mark.parametrize("name", ["secret.csv", "secret.parquet", "secret.json"])
def test_a_file_named_as_a_table_is_not_read(db, capsys, tmp_path, name):
    path = tmp_path / name
    if name.endswith(".parquet"):
        import duckdb

        duckdb.sql(f"COPY (SELECT 'hunter2' AS password) TO '{path}' (FORMAT parquet)")
    else:
        path.write_text('{"password": "hunter2"}' if name.endswith(".json")
                        else "password\nhunter2\n")
    err = _cli_error(capsys, db, f"SELECT * FROM '{path}'")
    assert str(path) in err and "hunter2" not in err
    err = _cli_error(capsys, db, f"SELECT * FROM '{SECRET_FILE}'")
    assert SECRET_FILE in err and "root:" not in err


def test_missing_database_file_is_named(tmp_path, capsys):
    missing = tmp_path / "none.duckdb"
    err = _cli_error(capsys, missing, "SELECT 1")
    assert str(missing) in err and "no such DuckDB results file" in err
    assert not missing.exists()


def test_reads_views_and_introspection_still_work(db, capsys):
    _, rows = results.query(db, "SELECT loader_config, final_miou, seconds FROM model_comparison")
    assert rows == [("local-default", pytest.approx(0.2), 4.0)]
    assert results.query(db, "SELECT count(*) FROM best_configs")[1] == [(0,)]
    assert results.query(db, "WITH v AS (SELECT bytes FROM variant_stats) FROM v")[1] == [(400,)]
    _, rows = results.query(db, "SELECT config->>'lr' FROM training_runs WHERE step = ?", [2])
    assert rows == [("0.01",)]
    assert ("variant_stats",) in results.query(db, "SHOW TABLES")[1]
    assert results.query(db, "DESCRIBE variant_stats")[1][0][:2] == ("dataset", "VARCHAR")
    assert results.query(db, "PRAGMA table_info('variant_stats')")[1][0][1] == "dataset"
    assert results.query(db, "EXPLAIN SELECT * FROM variant_stats")[0] == [
        "explain_key", "explain_value"]
    assert main(["query", "--db", str(db), "-- the newest\nSELECT item FROM variant_stats;"]) == 0
    assert capsys.readouterr().out.splitlines()[2] == "bench_00"


def test_parse_errors_are_one_line(db, capsys):
    err = _cli_error(capsys, db, "selec *\nfrom variant_stats")
    assert err.startswith("ocog: error: query 'selec * from variant_stats': Parser Error")
