"""`ocog bench epoch`: one row per epoch length, recorded; the first batch does not wait
for the epoch (no speed targets: the rows are checked for what they claim)."""

from __future__ import annotations

import json

import pytest

from ocog_lib import results
from ocog_lib.bench.epoch import EpochBenchConfig, bench_epochs, format_epochs
from ocog_lib.cli.main import main
from ocog_lib.errors import InputError
from ocog_lib.stream.config import StreamConfig
from tests.support.benchdata import make_bench_variants


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return make_bench_variants(tmp_path_factory.mktemp("epoch"), size=512)


def test_a_row_per_length_from_the_same_engine(settings):
    engine = StreamConfig(patch_size=128, batch_size=8, threads=2)
    run = bench_epochs("sample", engine, EpochBenchConfig(lengths=(10**9, 1000), seconds=0.3),
                       settings)  # fmt: skip
    assert [r.config["length"] for r in run.rows] == [1000, 10**9]  # shortest first
    assert [r.name for r in run.rows] == ["ocog epoch 1e3", "ocog epoch 1e9"]
    for r in run.rows:
        c = r.config
        assert 0 < c["open_s"] <= r.startup_s and r.samples > 0 and r.samples_per_s > 0
        assert c["rss_delta_mb"] == pytest.approx(r.peak_rss_mb - c["rss_before_mb"])
    table = format_epochs(run).splitlines()
    assert table[0].split()[:2] == ["name", "variant"] and len(table) == 4
    assert "length" in table[0] and "1000000000" in table[3]


def test_the_cli_prints_and_records(settings, monkeypatch, capsys):
    monkeypatch.setenv("OCOG_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("OCOG_DUCKDB", str(settings.results_db))
    assert main(["bench", "epoch", "--lengths", "2e3", "--seconds", "0.2", "--patch-size",
                 "128", "--batch-size", "8", "--json"]) == 0  # fmt: skip
    doc = json.loads(capsys.readouterr().out)
    assert doc["epoch"]["lengths"] == [2000] and len(doc["rows"]) == 1
    _, rows = results.query(settings.results_db, "SELECT name, startup_s FROM "
                            f"stream_benchmarks WHERE run_id = '{doc['run_id']}'")
    assert rows == [("ocog epoch 2e3", pytest.approx(doc["rows"][0]["startup_s"]))]


def test_bad_lengths_are_refused():
    with pytest.raises(InputError, match="lengths"):
        EpochBenchConfig(lengths=())
    with pytest.raises(SystemExit):  # argparse: a count is a whole number >= 1
        main(["bench", "epoch", "--lengths", "0"])
