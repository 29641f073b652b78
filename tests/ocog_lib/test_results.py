"""The DuckDB results file, on real files in tmp."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import subprocess
import sys
import threading

import duckdb
import numpy as np
import pytest

from ocog_lib import results
from ocog_lib.errors import InputError
from ocog_lib.secrets import MASK, redact_value


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


def test_lineage_migration_upgrades_a_version_12_file(tmp_path, monkeypatch):
    db = tmp_path / "r.duckdb"
    monkeypatch.setattr(results, "MIGRATIONS", results.MIGRATIONS[:12])
    con = duckdb.connect(str(db))
    try:
        assert results.migrate(con) == 12
        con.execute("INSERT INTO stream_benchmarks (run_id, name) VALUES ('old', 'ocog')")
    finally:
        con.close()
    monkeypatch.undo()
    with results.connect(db) as con:  # an ocog of version 13 opens the older file
        assert results.schema_version(con) == 13
        lacking = [t for t in ("variant_stats", "stream_benchmarks", "search_trials",
                               "grid_cells", "training_runs", "tile_benchmarks",
                               "area_benchmarks", "retrieval_quality", "retrieval_benchmarks",
                               "compressed_archives")
                   if results.table_columns(con, t).get("content_hash") != "VARCHAR"]
    assert lacking == []
    results.write_rows(db, "stream_benchmarks", [{"run_id": "new", "content_hash": "ab" * 32}])
    _, rows = results.query(db, "SELECT run_id, content_hash FROM stream_benchmarks ORDER BY 1")
    assert rows == [("new", "ab" * 32), ("old", None)]


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
    assert (workers, secret, cores) == ("4", MASK, "2")


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
    out = redact_value(config)
    text = json.dumps(out)
    for secret in ("wJalrXUtnFEMI", "FQoGZXIvYXdz", "AbC%2Bd", "hunter2", "ff00", "AK%2F1"):
        assert secret not in text
    assert out["workers"] == 4
    assert out["aws_secret_access_key"] == MASK
    assert out["storage"] == {"azure_sas_token": MASK, "account": "acct", "password": ""}
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


# --- a write that cannot get the lock is spooled, then merged exactly once -------------------


@contextlib.contextmanager
def _locked(db):
    """Another process holds the results file read-write until the block ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
         "print('locked', flush=True); sys.stdin.readline(); c.close()", str(db)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.stdin.close()
        assert holder.wait(timeout=30) == 0


def _bench(run_id: str, sps: float = 100.0) -> dict:
    return {"run_id": run_id, "name": "ocog", "dataset": "sample", "variant": "default",
            "loader": "ocog", "samples_per_s": sps, "ts": 1_700_000_000.25,
            "config": {"workers": 2, "aws_secret_access_key": "AKSPOOLSECRET"}}


def _count(db, sql: str) -> int:
    return results.query(db, sql)[1][0][0]


def _spooled(db) -> list[str]:
    folder = results.spool_dir(db)
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_locked_write_is_spooled_then_merged_once_by_the_next_write(tmp_path, caplog):
    db = tmp_path / "r.duckdb"
    results.write_rows(db, "variant_stats", [_stat("a", nbytes=100)])
    before = dt.datetime.now(dt.UTC)
    with _locked(db):
        assert results.write_rows(db, "stream_benchmarks", [_bench("r1"), _bench("r1")],
                                  lock_wait=0.2) == 2
        assert results.write_rows(db, "variant_stats", [_stat("a", nbytes=7)], lock_wait=0.2,
                                  replace_where={"dataset": "sample", "variant": "default"}) == 1
        files = _spooled(db)
        assert len(files) == 2 and all(f.endswith(".json") for f in files)
        status = results.spool_status(db)
        assert (status.writes, status.rows, status.failed) == (2, 3, 0)
        # the user is told where the rows went, and no secret reaches the spool file
        assert sum(str(results.spool_dir(db)) in r.getMessage() for r in caplog.records) == 2
        text = "".join((results.spool_dir(db) / f).read_text() for f in files)
        assert "AKSPOOLSECRET" not in text and MASK in text
        with pytest.raises(InputError, match="locked by another process"):
            results.query(db, "SELECT 1", lock_wait=0.1)
        locked_until = dt.datetime.now(dt.UTC)
    results.write_rows(db, "stream_benchmarks", [_bench("r2")])
    assert _spooled(db) == []
    assert _count(db, "SELECT count(*) FROM stream_benchmarks WHERE run_id = 'r1'") == 2
    assert _count(db, "SELECT count(*) FROM stream_benchmarks") == 3
    # the spooled replace ran in order: the partition holds the spooled row, once, stamped
    # with the time of its write, not of the merge
    (row,) = results.query(db, "SELECT item, bytes, written_at FROM variant_stats")[1]
    assert row[:2] == ("a", 7) and before <= row[2] <= locked_until
    _, (row,) = results.query(db, "SELECT ts, config->>'aws_secret_access_key' "
                                  "FROM stream_benchmarks WHERE run_id = 'r1' LIMIT 1")
    assert row == (dt.datetime.fromtimestamp(1_700_000_000.25, tz=dt.UTC), MASK)
    assert _count(db, "SELECT count(*) FROM spool_merges") == 2
    results.write_rows(db, "stream_benchmarks", [_bench("r3")])
    assert _count(db, "SELECT count(*) FROM stream_benchmarks") == 4
    assert results.spool_status(db).note(db) is None


def test_spooled_blobs_merge_bit_exact(tmp_path):
    """Bitstreams and hash codes (BLOB columns) survive the JSON spool byte for byte, as
    bulk columns and as rows."""
    db = tmp_path / "r.duckdb"
    results.write_rows(db, "variant_stats", [_stat("a")])
    blobs = [bytes(range(256)), b"", b"OC\x01\x00'\"\\n"]
    n = len(blobs)
    code = np.empty(n, dtype=object)
    code[:] = [b"\xff\x00"] * n
    stream = np.empty(n, dtype=object)
    stream[:] = blobs
    cols = results.Columns({"dataset": np.full(n, "s"), "codec_id": np.full(n, "c"),
                            "model_id": np.full(n, "m"), "idx": np.arange(n),
                            "cell": np.full(n, 1, np.uint64), "lon": np.zeros(n),
                            "lat": np.zeros(n), "code_bits": np.full(n, 16),
                            "code": code, "format_version": np.ones(n, np.int16),
                            "bitstream": stream})  # fmt: skip
    row = {"run_id": "r", "dataset": "s", "codec_id": "c", "model_id": "m", "patches": n}
    with _locked(db):
        results.write_rows(db, "compressed_patches", cols, lock_wait=0.1)
        results.write_rows(db, "compressed_archives", [row], lock_wait=0.1)
        assert results.spool_status(db).writes == 2
    results.write_rows(db, "variant_stats", [_stat("b")])  # merges the spool
    _, got = results.query(db, "SELECT bitstream, code FROM compressed_patches ORDER BY idx")
    assert [bytes(b) for b, _ in got] == blobs and {bytes(c) for _, c in got} == {b"\xff\x00"}
    assert _count(db, "SELECT count(*) FROM compressed_archives") == 1


def test_lock_wait_comes_from_the_env_with_one_default(tmp_path, monkeypatch):
    monkeypatch.delenv(results.LOCK_WAIT_ENV, raising=False)
    assert results.lock_wait_s() == results._LOCK_WAIT_S == 30.0
    assert results.lock_wait_s(0.5) == 0.5
    monkeypatch.setenv(results.LOCK_WAIT_ENV, "soon")
    with pytest.raises(InputError, match=results.LOCK_WAIT_ENV):
        results.write_rows(tmp_path / "r.duckdb", "variant_stats", [_stat("a")])
    db = tmp_path / "r.duckdb"
    monkeypatch.setenv(results.LOCK_WAIT_ENV, "0.1")
    results.write_rows(db, "variant_stats", [_stat("a")])
    with _locked(db):
        results.write_rows(db, "variant_stats", [_stat("b")])  # waits 0.1 s, not 30
        assert results.spool_status(db).rows == 1
    with results.connect(db):  # a writable open merges too
        pass
    assert _spooled(db) == []
    assert results.query(db, "SELECT item FROM variant_stats ORDER BY item")[1] == [("a",), ("b",)]


def test_a_spool_is_merged_once_by_writers_racing_and_after_a_crash(tmp_path):
    db = tmp_path / "r.duckdb"
    results.write_rows(db, "stream_benchmarks", [_bench("base")])
    with _locked(db):
        for i in range(4):
            results.write_rows(db, "stream_benchmarks", [_bench(f"s{i}")] * 3, lock_wait=0.1)
    folder = results.spool_dir(db)
    first, second, *rest = sorted(folder.iterdir())
    # a merger that died after its claim, and one that died after its commit
    first.rename(first.with_name(f"{first.name}.claimed-999999999-dead"))
    copy = (second.name, second.read_text())
    with results.connect(db):
        pass
    (folder / copy[0]).write_text(copy[1])  # committed, its file back: the ledger knows it
    assert results.spool_status(db).writes == 1
    with _locked(db):  # two more spooled while locked, for the race below
        for i in range(4, 6):
            results.write_rows(db, "stream_benchmarks", [_bench(f"s{i}")] * 3, lock_wait=0.1)
    barrier = threading.Barrier(4)

    def writer(n: int) -> None:
        barrier.wait()
        results.write_rows(db, "stream_benchmarks", [_bench(f"w{n}")])

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert _spooled(db) == []
    counts = dict(results.query(db, "SELECT run_id, count(*) FROM stream_benchmarks "
                                    "GROUP BY run_id")[1])
    assert counts == {"base": 1, **{f"s{i}": 3 for i in range(6)}, **{f"w{n}": 1 for n in range(4)}}
    assert _count(db, "SELECT count(*) FROM spool_merges") == 6


def test_a_spooled_write_that_cannot_merge_is_kept_and_reported(tmp_path, capsys):
    from ocog_lib.cli.main import main

    db = tmp_path / "r.duckdb"
    results.write_rows(db, "variant_stats", [_stat("a")])
    with _locked(db):
        results.write_rows(db, "variant_stats", [_stat("a")], lock_wait=0.1)  # duplicate key
        results.write_rows(db, "stream_benchmarks", [_bench("r1")], lock_wait=0.1)
        with pytest.raises(InputError, match="colour"):  # a bad write fails, is not spooled
            results.write_rows(db, "variant_stats", [_stat("b", colour="red")], lock_wait=0.1)
    assert main(["query", "--db", str(db), "SELECT count(*) AS n FROM stream_benchmarks"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[2].split() == ["0"]
    assert captured.err == (f"ocog: note: 2 spooled row(s) in 2 write(s) under "
                            f"{results.spool_dir(db)} are not in {db} yet: the next write "
                            "merges them\n")
    results.write_rows(db, "variant_stats", [_stat("c")])
    assert [p.endswith(".json.failed") for p in _spooled(db)] == [True]
    assert results.query(db, "SELECT item FROM variant_stats ORDER BY item")[1] == [("a",), ("c",)]
    assert _count(db, "SELECT count(*) FROM stream_benchmarks") == 1
    assert main(["query", "--db", str(db), "SELECT 1"]) == 0
    assert "1 spooled write(s)" in capsys.readouterr().err


@pytest.fixture(scope="module")
def bench_settings(tmp_path_factory):
    from tests.support.benchdata import make_bench_variants

    return make_bench_variants(tmp_path_factory.mktemp("benchdata"), size=256)


_STREAM = ["bench", "stream", "--json", "--seconds", "0.2", "--length", "64", "--batch-size",
           "8", "--patch-size", "64", "--threads", "1"]


def test_bench_stream_prints_its_result_and_spools_it_while_the_db_is_locked(
        bench_settings, monkeypatch, capsys):
    from ocog_lib.cli.main import main

    db = bench_settings.results_db
    monkeypatch.setenv("OCOG_DATA_DIR", str(bench_settings.data_dir))
    monkeypatch.setenv("OCOG_DUCKDB", str(db))
    monkeypatch.setenv(results.LOCK_WAIT_ENV, "0.2")
    results.write_rows(db, "variant_stats", [_stat("a")])
    with _locked(db):
        assert main(_STREAM) == 0
        run_id = json.loads(capsys.readouterr().out)["run_id"]
        (spooled,) = _spooled(db)
        assert json.loads((results.spool_dir(db) / spooled).read_text())["rows"][0]["run_id"] \
            == run_id
    with results.connect(db):
        pass
    assert _count(db, f"SELECT count(*) FROM stream_benchmarks WHERE run_id = '{run_id}'") == 1


def test_bench_stream_prints_its_result_before_storing_it(bench_settings, monkeypatch, capsys):
    from ocog_lib.cli.main import main

    def fail(db_path, table, rows, **_):
        raise InputError(db_path, "disk full")

    monkeypatch.setenv("OCOG_DATA_DIR", str(bench_settings.data_dir))
    monkeypatch.setenv("OCOG_DUCKDB", str(bench_settings.results_db))
    monkeypatch.setattr(results, "write_rows", fail)
    assert main(_STREAM) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["rows"][0]["samples_per_s"] > 0
    assert captured.err.startswith("ocog: error: ") and "disk full" in captured.err
