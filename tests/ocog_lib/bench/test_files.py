"""`ocog bench files`: cold, build and warm rows per file count; the warm row reads no
header byte and its index hits every file (no speed targets)."""

from __future__ import annotations

import json

from ocog_lib import results
from ocog_lib.bench.files import FilesBenchConfig, bench_many_files, format_files
from ocog_lib.cli.main import main
from ocog_lib.settings import Settings


def test_three_rows_per_count_and_a_warm_index_reads_no_header(tmp_path):
    settings = Settings(data_dir=tmp_path, results_db=tmp_path / "r.duckdb")
    run = bench_many_files(FilesBenchConfig(counts=(12, 3)), settings)
    got = [(r.config["files"], r.config["mode"]) for r in run.rows]
    assert got == [(3, "cold"), (3, "build"), (3, "warm"), (12, "cold"), (12, "build"),
                   (12, "warm")]  # fmt: skip
    for r in run.rows:
        c = r.config
        assert 0 < c["open_s"] <= r.startup_s and r.samples == 32
        if c["mode"] == "warm":
            assert c["header_bytes"] == 0 and c["index_hits"] == c["files"]
        else:
            assert c["header_bytes"] > 0 and c["index_hits"] == 0
    assert len(list((tmp_path / "bench_files").glob("f*.tif"))) == 12  # made once, reused
    assert [p.name for p in (tmp_path / "bench_files").iterdir() if not p.suffix == ".tif"] \
        == []  # the indexes (and their locks) are gone
    assert "header bytes" in format_files(run).splitlines()[0]


def test_the_cli_records_rows(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OCOG_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("OCOG_DUCKDB", str(tmp_path / "r.duckdb"))
    assert main(["bench", "files", "--counts", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    _, rows = results.query(tmp_path / "r.duckdb", "SELECT name FROM stream_benchmarks "
                            f"WHERE run_id = '{doc['run_id']}' ORDER BY name")
    assert [r[0] for r in rows] == ["ocog files 2 build", "ocog files 2 cold",
                                    "ocog files 2 warm"]  # fmt: skip
