"""The `ocog` command: entry point, help of every subcommand, queries on a real file."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ocog_lib import __version__, results
from ocog_lib.cli.main import build_parser, main
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
    code = ("import sys; from ocog_lib.cli.main import build_parser; build_parser(); "
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

    # lineage: the rows name the variant's content hash; verify re-hashes it, or names a change
    _, hashes = results.query(settings.results_db, "SELECT DISTINCT content_hash FROM "
                              "variant_stats")  # fmt: skip
    capsys.readouterr()
    assert main(["variants", "verify", "--variant", variant]) == 0
    assert f"sample|{variant}: content_hash {hashes[0][0]} " in capsys.readouterr().out
    with open(image["path"], "r+b") as f:  # one byte, same size
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 0xFF]))
    assert main(["variants", "verify", "--variant", variant]) == 1
    assert f"bench/{bench.name}.tif: bytes changed" in capsys.readouterr().err


def test_variants_write_unknown_variant_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OCOG_DATA_DIR", str(tmp_path / "data"))
    assert main(["variants", "write", "--variant", "default"]) == 1
    assert "manifest.json" in capsys.readouterr().err  # nothing prepared yet
    assert main(["variants", "write", "--variant", "fastest"]) == 1
    err = capsys.readouterr().err
    assert "fastest" in err


# --- help texts and defaults: one source of truth -----------------------------------------


def _parsers():
    """(argv prefix, parser) of every (sub)command."""
    def walk(parser, prefix=()):
        yield prefix, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, (*prefix, name))

    return list(walk(build_parser()))


def _flags(parser):
    return {a.dest: a for a in parser._actions if a.option_strings and a.dest != "help"}


def test_every_optional_flag_has_help():
    missing = [f"ocog {' '.join(path)} {'/'.join(a.option_strings)}"
               for path, parser in _parsers() for a in _flags(parser).values() if not a.help]
    assert missing == []


def test_engine_flags_default_to_stream_config():
    """A flag named like a StreamConfig field measures the engine's default, not its own."""
    from dataclasses import fields

    from ocog_lib.stream.config import StreamConfig

    engine = {f.name: f.default for f in fields(StreamConfig)}
    flags = _flags(dict(_parsers())[("bench", "stream")])
    sized_by_the_command = {"length"}  # 0: enough windows for --seconds
    checked = set(flags) & set(engine) - sized_by_the_command
    assert {"patch_size", "batch_size", "workers", "threads", "prefetch", "cache_mb",
            "patches_per_tile", "shuffle_tiles", "bands", "dtype", "sampler"} <= checked
    assert {d: flags[d].default for d in checked} == {d: engine[d] for d in checked}
    assert flags["shuffle_tiles"].default == StreamConfig.shuffle_tiles


def _library_defaults(obj) -> dict:
    import dataclasses
    import inspect

    if dataclasses.is_dataclass(obj):
        return {f.name: f.default for f in dataclasses.fields(obj)
                if f.default is not dataclasses.MISSING}
    return {k: p.default for k, p in inspect.signature(obj).parameters.items()
            if p.default is not inspect.Parameter.empty}


def test_flags_default_to_their_library_config():
    from ocog_lib.data.sentinel2 import SceneQuery, acquire_scene
    from ocog_lib.hdf5.export import ExportConfig
    from ocog_lib.hdf5.validate import compare_with_sources
    from ocog_lib.search.bayes import BayesianOptions, run_bayesian
    from ocog_lib.search.files import RemoteOptions
    from ocog_lib.search.grid import run_grid
    from ocog_lib.search.space import SearchSpace
    from ocog_lib.train.configs import TrainConfig

    parsers = dict(_parsers())
    sources = {
        ("train",): [TrainConfig],
        ("export", "hdf5"): [ExportConfig],
        ("export", "check"): [compare_with_sources],
        ("search", "bayesian"): [run_bayesian, RemoteOptions, SearchSpace],
        ("search", "grid"): [run_grid, RemoteOptions],
        ("data", "s2", "acquire"): [acquire_scene],
    }
    for path, objs in sources.items():
        flags = _flags(parsers[path])
        for obj in objs:
            lib = _library_defaults(obj)
            for dest in set(flags) & set(lib) - {"patch_sizes"}:
                assert flags[dest].default == lib[dest], (path, dest)
    renamed = [
        (("train",), "config", TrainConfig().loader_config),
        (("search", "bayesian"), "warmup", BayesianOptions().warmup_seconds),
        (("search", "bayesian"), "patch_sizes", SearchSpace().patch_sizes),
        (("search", "grid"), "warmup", _library_defaults(run_grid)["warmup_seconds"]),
        (("data", "s2", "search"), "max_cloud", SceneQuery(tiles=("36MZD",)).max_cloud_cover),
    ]
    for path, dest, expected in renamed:
        assert _flags(parsers[path])[dest].default == expected, (path, dest)


def test_compare_flags_keep_the_runs_config_and_say_so():
    from ocog_lib.bench.config import CompareConfig, RemoteCompareConfig

    flags = _flags(dict(_parsers())[("bench", "compare")])
    local, remote = CompareConfig(), RemoteCompareConfig()
    for dest in ("repeats", "seconds", "cache_mb"):
        assert flags[dest].default is None  # unset: the config's own value
        assert f"{getattr(local, dest):g} local, {getattr(remote, dest):g} with --remote" in (
            flags[dest].help)
    assert flags["rtt_ms"].default == remote.rtt_ms
    assert ",".join(f"{c:g}" for c in remote.caps_mb_s) in flags["caps"].help
    assert ",".join(local.variants) in flags["variants"].help


def test_a_flag_shows_the_default_a_config_built_without_arguments_runs_with(monkeypatch):
    """The CLI reads its defaults by importing the library's configs (test_help_does_not_
    import_torch keeps those modules light); what it shows must be what the library then
    runs with, __post_init__ included."""
    import dataclasses

    from ocog_lib.cli import types as cli_types

    read = []
    real = cli_types.defaults
    monkeypatch.setattr(cli_types, "defaults", lambda obj: read.append(obj) or real(obj))
    cli_types.defaults_of.cache_clear()
    try:
        build_parser()
    finally:
        cli_types.defaults_of.cache_clear()
    configs = {obj for obj in read if dataclasses.is_dataclass(obj)}
    assert {"StreamConfig", "TrainConfig", "CompareConfig", "ExportConfig"} <= {
        c.__name__ for c in configs}
    for config in configs:
        try:
            built = config()
        except (TypeError, InputError):  # needs a value of the caller's (SceneQuery: tiles)
            continue
        for name, value in real(config).items():
            assert getattr(built, name) == value, (config.__name__, name)


def test_help_does_not_import_torch():
    code = ("import sys; from ocog_lib.cli.main import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'rasterio', 'optuna') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines


def test_help_texts_say_what_the_code_does(capsys):
    from ocog_lib.remote.endpoint import BUCKET_VAR, DEFAULT_BUCKET, ENDPOINT_VARS

    stream = _help(["bench", "stream"], capsys)
    assert "--shuffle-tiles SHUFFLE_TILES tile visits" in stream and "(default: 16)" in stream
    assert "divided by --workers" in stream  # StreamConfig.threads_per_process
    endpoint_order = ", else ".join(ENDPOINT_VARS)
    compare = _help(["bench", "compare"], capsys)
    assert endpoint_order in compare
    # the one bucket and key layout of remote.session, and the long-lived server reused
    assert f"bucket ${BUCKET_VAR} (default {DEFAULT_BUCKET})" in compare
    assert "variants/<dataset>/<variant>/" in compare and "`ocog s3 serve` when it runs" in compare
    assert "OCOG_S3_ENDPOINT, else AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL" in _help(
        ["s3"], capsys)
    variants = _help(["variants", "write"], capsys)
    assert "ocog variants list" in variants and "CODEC[:key=value,...]" in variants
    assert "$OCOG_DATA_DIR/ocog.duckdb" in _help(["query"], capsys)


def test_variants_list(capsys):
    from ocog_lib.cog.profiles import PROFILES, profile_from_spec

    assert main(["variants", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["name", "compression", "level", "predictor", "block"]
    rows = {ln.split()[0]: ln.split() for ln in lines[2:2 + len(PROFILES)]}
    assert rows["default"][1:5] == ["DEFLATE", "6", "1", "512"]
    assert rows["optimal_remote"][1:5] == ["LERC_ZSTD", "9", "1", "512"]
    assert any(ln.strip().startswith("CODEC[:key=value,...]") for ln in lines)

    assert main(["variants", "list", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {p["name"] for p in doc["profiles"]} == set(PROFILES)
    example = doc["custom"][0].split("e.g. ")[1]
    assert profile_from_spec(example).interleave == "BAND"  # the example is a valid spec
