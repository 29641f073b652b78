"""Hostile command lines: every bad value is refused by argparse before any work starts,
with exit status 2 and one `error: argument --flag: ...` line, never a traceback."""

from __future__ import annotations

import pytest

from ocog_lib.cli.main import main

GRID = ["search", "grid", "--var1", "sampler", "--var2", "block_size"]
S2_SEARCH = ["data", "s2", "search", "--api", "http://127.0.0.1:9", "--tiles", "36MZD"]

# (command, flag, bad value)
CASES = [
    *[(["bench", "stream"], flag, value) for flag, value in [
        ("--batch-size", "0"), ("--batch-size", "-3"), ("--patch-size", "0"),
        ("--patch-size", "abc"), ("--workers", "-1"), ("--threads", "-1"), ("--prefetch", "0"),
        ("--cache-mb", "0"), ("--cache-mb", "nan"), ("--patches-per-tile", "-1"),
        ("--shuffle-tiles", "0"), ("--bands", "a,b"), ("--bands", "0,,1"), ("--bands", "-1"),
        ("--dtype", "bogus"), ("--dtype", "complex64"), ("--length", "-5"), ("--seconds", "-1"),
        ("--seconds", "0"), ("--seconds", "inf"), ("--seed", "-1"), ("--step-ms", "-1"),
    ]],
    *[(["bench", "compare"], flag, value) for flag, value in [
        ("--repeats", "0"), ("--seconds", "-1"), ("--cache-mb", "-1"), ("--variants", ""),
        ("--variants", "default,,optimal_local"), ("--rtt-ms", "-1"), ("--caps", "100,x"),
        ("--caps", "0"),
    ]],
    *[(["search", "bayesian"], flag, value) for flag, value in [
        ("--trials", "0"), ("--seed", "-1"), ("--max-workers", "-1"),
        ("--patch-sizes", "256,abc"), ("--seconds", "0"), ("--warmup", "-1"),
        ("--rtt-ms", "-1"), ("--cap-mb-s", "0"),
    ]],
    (GRID, "--repeats", "0"), (GRID, "--values1", ""), (GRID, "--seconds", "-2"),
    *[(["train"], flag, value) for flag, value in [
        ("--max-time", "0"), ("--iterations", "0"), ("--patch-size", "0"),
        ("--batch-size", "0"), ("--width", "0"), ("--lr", "0"), ("--lr", "-1"),
        ("--eval-every", "0"), ("--workers", "-1"), ("--seed", "-1"), ("--config", "fastest"),
    ]],
    *[(["export", "hdf5"], flag, value) for flag, value in [
        ("--patch-size", "0"), ("--samples", "-1"), ("--seed", "-1"), ("--gzip-level", "10"),
        ("--split-block", "-1"), ("--roles", ","),
    ]],
    (["export", "check", "x.h5"], "--samples", "0"), (["export", "check", "x.h5"], "--seed", "-1"),
    (S2_SEARCH, "--max-cloud", "101"), (S2_SEARCH, "--max-cloud", "-1"),
    (["data", "s2", "acquire"], "--connections", "0"),
    (["data", "prepare", "vaihingen"], "--limit", "0"),
    (["sample", "build"], "--bench-size", "8"), (["sample", "build"], "--n-bench", "-1"),
]  # fmt: skip


@pytest.mark.parametrize(("command", "flag", "value"), CASES,
                         ids=[f"{' '.join(c)} {f}={v}" for c, f, v in CASES])  # fmt: skip
def test_bad_value_is_refused_by_argparse(command, flag, value, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("OCOG_DATA_DIR", str(tmp_path))  # should it run anyway: nothing there
    monkeypatch.delenv("OCOG_DUCKDB", raising=False)
    with pytest.raises(SystemExit) as exc:
        main([*command, f"{flag}={value}"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    assert errors[0].startswith(f"ocog {' '.join(command[:2])}"), errors[0]
    assert f"error: argument {flag}: " in errors[0], errors[0]


def test_the_message_says_what_is_wrong(capsys):
    for argv, expected in (
        (["bench", "stream", "--batch-size", "0"], "0 must be at least 1"),
        (["bench", "stream", "--bands", "a,b"], "'a,b': 'a' is not an integer"),
        (["bench", "stream", "--dtype", "bogus"], "'bogus' is not one of uint8, int8"),
        (["bench", "stream", "--seconds", "-1"], "-1 must be more than 0"),
    ):
        with pytest.raises(SystemExit):
            main(argv)
        assert expected in capsys.readouterr().err, argv


def test_good_values_are_parsed_to_what_the_library_takes():
    from ocog_lib.cli.main import build_parser

    args = build_parser().parse_args(
        ["bench", "stream", "--bands", "2, 0,1", "--dtype", "Float32", "--cache-mb", "64",
         "--seconds", "0.5"])  # fmt: skip
    assert (args.bands, args.dtype, args.cache_mb, args.seconds) == ((2, 0, 1), "float32", 64.0,
                                                                     0.5)  # fmt: skip
    args = build_parser().parse_args(["bench", "compare", "--remote", "--caps", "50,500",
                                      "--variants", "default, optimal_local"])  # fmt: skip
    assert args.caps == (50.0, 500.0) and args.variants == ("default", "optimal_local")
