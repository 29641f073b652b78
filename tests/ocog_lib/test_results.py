"""The DuckDB results file, on real files in tmp."""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import pytest

from ocog_lib import results
from ocog_lib.errors import InputError


def _stat(item: str, variant: str = "default", nbytes: int = 100, **extra) -> dict:
    row = {
        "dataset": "sample", "variant": variant, "item": item, "kind": "image",
        "path": f"/data/variants/sample/{variant}/{item}.tif", "bytes": nbytes,
        "decoded_bytes": 4 * nbytes, "compression_ratio": 4.0, "write_seconds": 0.25,
        "compression": "DEFLATE", "level": 6, "predictor": 1, "block_size": 512,
        "interleave": "PIXEL", "is_valid_cog": True, "lossless_ok": True,
    }
    row.update(extra)
    return row


def test_migrations_run_once_and_are_idempotent(tmp_path):
    db = tmp_path / "r.duckdb"
    for _ in range(3):
        with results.connect(db) as con:
            assert results.schema_version(con) == results.SCHEMA_VERSION
    con = duckdb.connect(str(db), read_only=True)
    try:
        versions = con.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
        tables = {t for (t,) in con.execute(
            "SELECT table_name FROM information_schema.tables").fetchall()}
    finally:
        con.close()
    assert [v for (v,) in versions] == [m.version for m in results.MIGRATIONS]
    assert {"schema_migrations", "variant_stats", "stream_benchmarks"} <= tables


def test_migrate_applies_only_missing_versions(tmp_path):
    db = tmp_path / "r.duckdb"
    results.write_rows(db, "variant_stats", [_stat("a")])
    # A migration already recorded must not be re-run (it would fail or duplicate work).
    with results.connect(db) as con:
        before = con.execute("SELECT applied_at FROM schema_migrations").fetchall()
        results.migrate(con)
        after = con.execute("SELECT applied_at FROM schema_migrations").fetchall()
        kept = con.execute("SELECT count(*) FROM variant_stats").fetchone()[0]
    assert before == after
    assert kept == 1


def test_write_replace_query_round_trip(tmp_path):
    db = tmp_path / "r.duckdb"
    results.write_rows(db, "variant_stats", [_stat("a"), _stat("b")],
                       replace_where={"dataset": "sample", "variant": "default"})
    results.write_rows(db, "variant_stats", [_stat("a", variant="optimal_local", nbytes=400)],
                       replace_where={"dataset": "sample", "variant": "optimal_local"})
    # Re-materializing the default partition replaces its rows, keeps the others.
    results.write_rows(db, "variant_stats", [_stat("a", nbytes=90)],
                       replace_where={"dataset": "sample", "variant": "default"})
    cols, rows = results.query(
        db, "SELECT variant, item, bytes, is_valid_cog, written_at FROM variant_stats "
            "ORDER BY variant, item")
    assert cols == ["variant", "item", "bytes", "is_valid_cog", "written_at"]
    assert [r[:4] for r in rows] == [("default", "a", 90, True), ("optimal_local", "a", 400, True)]
    assert all(isinstance(r[4], dt.datetime) for r in rows)


def test_duplicate_key_without_replace_is_refused_and_nothing_is_written(tmp_path):
    db = tmp_path / "r.duckdb"
    results.write_rows(db, "variant_stats", [_stat("a")])
    with pytest.raises(InputError, match="variant_stats"):
        results.write_rows(db, "variant_stats", [_stat("b"), _stat("a")])
    _, rows = results.query(db, "SELECT item FROM variant_stats")
    assert rows == [("a",)]


def test_stream_benchmarks_epoch_ts_and_json_columns(tmp_path):
    db = tmp_path / "r.duckdb"
    row = {"run_id": "r1", "ts": 1_700_000_000.5, "name": "ocog", "dataset": "sample",
           "variant": "default", "storage": "local", "sampler": "block", "loader": "ocog",
           "samples_per_s": 1234.5, "config": {"workers": 4, "aws_secret_access_key": "AKS"},
           "host": json.dumps({"cores": 2}), "git_sha": "abc"}
    results.write_rows(db, "stream_benchmarks", [row])
    _, rows = results.query(
        db, "SELECT ts, config->>'workers', config->>'aws_secret_access_key', host->>'cores' "
            "FROM stream_benchmarks")
    ts, workers, secret, cores = rows[0]
    assert ts == dt.datetime.fromtimestamp(1_700_000_000.5, tz=dt.UTC)
    assert (workers, secret, cores) == ("4", results.MASK, "2")


def test_unknown_table_and_column_are_named(tmp_path):
    db = tmp_path / "r.duckdb"
    with pytest.raises(InputError, match="no_such_table"):
        results.write_rows(db, "no_such_table", [{"a": 1}])
    with pytest.raises(InputError, match="colour"):
        results.write_rows(db, "variant_stats", [_stat("a", colour="red")])
    with pytest.raises(InputError, match="replace_where"):
        results.write_rows(db, "variant_stats", [_stat("a")], replace_where={})


def test_bad_sql_and_missing_file_are_input_errors(tmp_path):
    db = tmp_path / "r.duckdb"
    results.write_rows(db, "variant_stats", [_stat("a")])
    with pytest.raises(InputError, match="selec"):
        results.query(db, "selec * from variant_stats")
    with pytest.raises(InputError, match="no_table"):
        results.query(db, "select * from no_table")
    missing = tmp_path / "nope.duckdb"
    with pytest.raises(InputError, match="nope.duckdb"):
        results.query(missing, "select 1")
    assert not missing.exists()


def test_query_is_read_only(tmp_path):
    db = tmp_path / "r.duckdb"
    results.write_rows(db, "variant_stats", [_stat("a")])
    with pytest.raises(InputError, match="read-only"):
        results.query(db, "DELETE FROM variant_stats")
    assert results.query(db, "SELECT count(*) FROM variant_stats")[1] == [(1,)]


def test_format_table_aligns_columns():
    text = results.format_table(
        ["item", "bytes", "ok"], [("a", 5, True), ("long_name", 12345, None)])
    lines = text.splitlines()
    assert lines[0].split() == ["item", "bytes", "ok"]
    assert lines[2].split() == ["a", "5", "true"]
    assert lines[3].split() == ["long_name", "12345", "NULL"]
    # numbers are right-aligned: their last digits line up under the header's end
    assert lines[2].index("5") + 1 == lines[0].index("bytes") + len("bytes")
    assert lines[3].index("12345") + 5 == lines[0].index("bytes") + len("bytes")
    assert lines[-1] == "(2 rows)"


def test_redact_masks_secret_keys_and_signed_urls():
    config = {
        "workers": 4,
        "aws_secret_access_key": "wJalrXUtnFEMI",
        "AWS_SESSION_TOKEN": "FQoGZXIvYXdz",
        "storage": {"azure_sas_token": "sv=2022&sig=abc", "account": "acct", "password": ""},
        "uris": [
            "https://acct.blob.core.windows.net/c/x.tif?sv=2022-11-02&se=2030&sig=AbC%2Bd&sp=r",
            "s3://bucket/x.tif",
            "https://user:hunter2@example.org/x.tif",
            "https://b.s3.amazonaws.com/x.tif?X-Amz-Credential=AK%2F1&X-Amz-Signature=ff00",
        ],
    }
    out = results.redact(config)
    text = json.dumps(out)
    for secret in ("wJalrXUtnFEMI", "FQoGZXIvYXdz", "AbC%2Bd", "hunter2", "ff00", "AK%2F1"):
        assert secret not in text
    assert out["workers"] == 4
    assert out["aws_secret_access_key"] == results.MASK
    assert out["storage"] == {"azure_sas_token": results.MASK, "account": "acct", "password": ""}
    assert out["uris"][0] == (
        "https://acct.blob.core.windows.net/c/x.tif?sv=2022-11-02&se=2030&sig=***&sp=r")
    assert out["uris"][1] == "s3://bucket/x.tif"
    assert out["uris"][2] == "https://user:***@example.org/x.tif"
    assert config["aws_secret_access_key"] == "wJalrXUtnFEMI"  # the input is left as it was


def test_writer_waits_for_another_process_holding_the_file(tmp_path):
    import subprocess
    import sys

    db = tmp_path / "r.duckdb"
    results.write_rows(db, "variant_stats", [_stat("a")])
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('locked', flush=True);"
         " time.sleep(1.5); c.close()", str(db)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        # DuckDB refuses a second process while the first holds the file: the writer retries
        results.write_rows(db, "variant_stats", [_stat("b")])
    finally:
        holder.wait(timeout=30)
    assert results.query(db, "SELECT item FROM variant_stats ORDER BY item")[1] == [("a",), ("b",)]
