"""The `ocog` command: entry point, help of every subcommand, queries on a real file."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ocog_lib import __version__, results
from ocog_lib.cli import build_parser, main
from ocog_lib.errors import InputError
from ocog_lib.settings import bench_size_from_env

OCOG = Path(sys.executable).with_name("ocog")


def _command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """Every (sub)command reachable from `parser`, as argv prefixes."""
    yield prefix
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _command_paths(sub, (*prefix, name))


def test_console_script_version():
    assert OCOG.exists(), f"{OCOG} missing: pip install -e . installs the ocog console script"
    out = subprocess.run([str(OCOG), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"ocog {__version__}"


def test_every_subcommand_has_help(capsys):
    paths = list(_command_paths(build_parser()))
    names = {" ".join(p) for p in paths}
    assert {"query", "sample build", "variants write", "demo"} <= names
    for path in paths:
        with pytest.raises(SystemExit) as exc:
            main([*path, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: ocog {' '.join(path)}".rstrip()), path


def test_help_does_not_import_dagster():
    code = ("import sys; from ocog_lib.cli import build_parser; build_parser(); "
            "print(any(m.split('.')[0] in ('dagster', 'ocog_assets') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.fixture
def results_db(tmp_path):
    db = tmp_path / "r.duckdb"
    rows = [
        {"dataset": "sample", "variant": v, "item": "bench_00", "kind": "image", "bytes": b,
         "decoded_bytes": 1000, "compression_ratio": 1000 / b, "is_valid_cog": True}
        for v, b in (("default", 400), ("optimal_local", 1000))
    ]
    results.write_rows(db, "variant_stats", rows)
    return db


def test_query_prints_a_table(results_db, capsys):
    sql = "select variant, bytes from variant_stats order by bytes"
    assert main(["query", "--db", str(results_db), sql]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["variant", "bytes"]
    assert [ln.split() for ln in lines[2:4]] == [["default", "400"], ["optimal_local", "1000"]]
    assert lines[4] == "(2 rows)"


def test_query_json_reads_the_env_db(results_db, capsys, monkeypatch):
    monkeypatch.setenv("OCOG_DUCKDB", str(results_db))
    sql = "select variant, compression_ratio from variant_stats order by variant"
    assert main(["query", "--json", sql]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["columns"] == ["variant", "compression_ratio"]
    assert doc["rows"] == [{"variant": "default", "compression_ratio": 2.5},
                           {"variant": "optimal_local", "compression_ratio": 1.0}]


def test_query_errors_name_the_input(results_db, tmp_path, capsys):
    assert main(["query", "--db", str(results_db), "selec nothing"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ocog: error: query 'selec nothing'")
    missing = tmp_path / "missing.duckdb"
    assert main(["query", "--db", str(missing), "select 1"]) == 1
    assert str(missing) in capsys.readouterr().err


def test_bench_size_from_env(monkeypatch):
    monkeypatch.delenv("OCOG_BENCH_SIZE", raising=False)
    assert bench_size_from_env() == 8192
    monkeypatch.setenv("OCOG_BENCH_SIZE", "512")
    assert bench_size_from_env() == 512
    monkeypatch.setenv("OCOG_BENCH_SIZE", "big")
    with pytest.raises(InputError, match="OCOG_BENCH_SIZE"):
        bench_size_from_env()


def test_sample_build_then_variants_write_with_a_spec(tmp_path, monkeypatch, capsys):
    import numpy as np
    import rasterio

    from ocog_lib.data.manifest import DatasetManifest
    from ocog_lib.settings import Settings

    monkeypatch.setenv("OCOG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("OCOG_DUCKDB", raising=False)
    settings = Settings.from_env()
    assert main(["sample", "build", "--bench-size", "256", "--n-bench", "1"]) == 0
    manifest = DatasetManifest.load(settings.prepared_dir("sample"))
    (bench,) = manifest.by_role("bench")
    with rasterio.open(manifest.image_path(bench)) as src:
        assert (src.width, src.height, src.count) == (256, 256, 4)
    capsys.readouterr()

    spec = "zstd:level=1,predictor=2,block=256"
    assert main(["variants", "write", "--variant", spec, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert {(r["item"], r["kind"]) for r in rows} == {
        (i.name, k) for i in manifest.items for k in ("image", "mask")}
    variant = rows[0]["variant"]
    _, db_rows = results.query(settings.results_db,
                               "SELECT item, kind, bytes, predictor, block_size, is_valid_cog, "
                               "lossless_ok FROM variant_stats WHERE variant = ?", [variant])
    assert sorted(db_rows) == sorted((r["item"], r["kind"], r["bytes"], r["predictor"],
                                      r["block_size"], True, True) for r in rows)
    image = next(r for r in rows if r["item"] == bench.name and r["kind"] == "image")
    assert (image["predictor"], image["block_size"]) == (2, 256)
    with rasterio.open(manifest.image_path(bench)) as a, rasterio.open(image["path"]) as b:
        assert np.array_equal(a.read(), b.read())

    # the same variant again replaces its rows instead of adding to them
    assert main(["variants", "write", "--variant", spec]) == 0
    assert "recorded" in capsys.readouterr().out
    _, n = results.query(settings.results_db, "SELECT count(*) FROM variant_stats")
    assert n == [(len(rows),)]


def test_variants_write_unknown_variant_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OCOG_DATA_DIR", str(tmp_path / "data"))
    assert main(["variants", "write", "--variant", "default"]) == 1
    assert "manifest.json" in capsys.readouterr().err  # nothing prepared yet
    assert main(["variants", "write", "--variant", "fastest"]) == 1
    err = capsys.readouterr().err
    assert "fastest" in err
