"""`ocog bench retrieval`: help, a tiny run as JSON, recording, the quality part skipped
without models (saying how to make them), and clear argument errors."""

from __future__ import annotations

import json

import pytest

from ocog_lib.cli.main import main


@pytest.fixture()
def env(tmp_path, monkeypatch):
    db = tmp_path / "ocog.duckdb"
    monkeypatch.setenv("OCOG_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("OCOG_DUCKDB", str(db))
    monkeypatch.delenv("OCOG_MODEL_STORE", raising=False)
    return db


def test_help_shows_the_library_defaults(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "retrieval", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert exc.value.code == 0
    assert "(default: 1e5,1e6,1e7)" in out and "(default: 32,64)" in out
    assert "(default: hamming_scan,hamming_mih,float_exact)" in out and "--codec-model" in out


def test_tiny_run_as_json_skips_the_quality_part_without_models(env, capsys):
    assert main(["bench", "retrieval", "--sizes", "2000", "--queries", "5", "--no-record",
                 "--json"]) == 0  # fmt: skip
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    got = [(r["method"], r["n"], r["bits"]) for r in doc["rows"]]
    assert got == [("hamming_scan", 2000, 32), ("hamming_mih", 2000, 32),
                   ("hamming_scan", 2000, 64), ("hamming_mih", 2000, 64),
                   ("float_exact", 2000, None)]  # fmt: skip
    assert all(r["recall_at_k"] == 1.0 and r["queries"] == 5 for r in doc["rows"])
    assert doc["config"]["sizes"] == [2000] and doc["config"]["k"] == 20
    skipped = doc["config"]["quality"]["skipped"]
    assert "ocog compress" in skipped and "ocog embed" in skipped and skipped in captured.err
    assert not env.exists()  # --no-record


def test_records_after_printing(env, capsys):
    assert main(["bench", "retrieval", "--sizes", "1e3", "--bits", "16", "--queries", "3",
                 "--methods", "hamming_mih", "--no-quality"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "equals scan: True" in out and "(table retrieval_benchmarks)" in out
    assert out.index("(1 row)") < out.index("1 row(s) of run")
    assert main(["query", "select kind, method, n, bits from retrieval_benchmarks",
                 "--json"]) == 0  # fmt: skip
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert rows == [{"kind": "scale", "method": "hamming_mih", "n": 1000, "bits": 16}]


def test_unreadable_models_are_one_error(env, tmp_path, capsys):
    (tmp_path / "e.pt").write_bytes(b"not a model")
    assert main(["bench", "retrieval", "--no-scale", "--no-record", "--codec-model",
                 str(tmp_path / "c.pt"), "--embed-model", str(tmp_path / "e.pt")]) == 1
    last = capsys.readouterr().err.splitlines()[-1]  # after the progress line
    assert last.startswith("ocog: error: ") and "e.pt" in last and "not an ocog encoder" in last


@pytest.mark.parametrize("argv, says", [
    (["--bits", "12"], "12 is not a multiple of 8"),
    (["--sizes", "1e5,0"], "must be a whole count"),
    (["--queries", "0"], "must be at least 1"),
    (["--flip", "0.7"], "must be in 0..0.49"),
    (["--no-scale", "--no-quality"], "not allowed with argument"),
])  # fmt: skip
def test_bad_arguments_stop_argparse(env, capsys, argv, says):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "retrieval", *argv])
    assert exc.value.code == 2 and says in capsys.readouterr().err


@pytest.mark.parametrize("argv, says", [
    (["--methods", "faiss"], "methods ('faiss',): choose from"),
    (["--sizes", "10", "--k", "20"], "k 20: must not exceed the smallest size 10"),
])  # fmt: skip
def test_bad_configs_are_one_error_naming_them(env, capsys, argv, says):
    assert main(["bench", "retrieval", "--no-record", *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ocog: error: ") and says in err and err.count("\n") == 1
