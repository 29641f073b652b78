"""`ocog compress`: every CompressConfig field a flag with the library's default; on an empty
data folder it writes the sample, trains the codec, archives every patch and scores the hash
codes, and `ocog similar --by hash` then answers for a point of the sample."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch

from ocog_lib.cli.main import build_parser, main
from ocog_lib.compress.config import CompressConfig
from ocog_lib.data.sample import CLASSES
from ocog_lib.embed.pipeline import QUALITY_K

TINY_FLAGS = ["--patch-size", "32", "--channels", "8", "--latents", "8", "--hash-bits", "16",
              "--hash-width", "8", "--batch-size", "8", "--batches-per-epoch", "4",
              "--norm-batches", "1", "--max-val-patches", "128", "--device", "cpu"]  # fmt: skip


def _parser():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices["compress"]


def test_every_config_field_is_a_flag_with_its_default(capsys):
    actions = {a.dest: a for a in _parser()._actions}
    for f in dataclasses.fields(CompressConfig):
        assert actions[f.name].default == f.default, f.name
        assert actions[f.name].help, f.name
    assert actions["k"].default == QUALITY_K
    with pytest.raises(SystemExit):
        main(["compress", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--hash-bits HASH_BITS bits of a hash code" in text and "(default: 64)" in text
    assert "--amp, --no-amp" in text and "(default: sample)" in text


@pytest.mark.parametrize("argv", [["--hash-bits", "8"], ["--hash-bits", "200"],
                                  ["--recon-share", "1.5"], ["--budget-s", "0"]])
def test_bad_values_are_refused_by_argparse(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["compress", *argv])
    assert exc.value.code == 2 and argv[0] in capsys.readouterr().err


def test_library_errors_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OCOG_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("OCOG_DUCKDB", raising=False)
    assert main(["compress", "sample", "--hash-bits", "20"]) == 1  # not a multiple of 8
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("ocog: error: ") and "hash_bits 20" in err


def test_fresh_folder_compress_then_similar_by_hash(tmp_path, monkeypatch, capsys):
    torch.set_num_threads(2)
    monkeypatch.setenv("OCOG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OCOG_BENCH_SIZE", "64")  # the sample's bench scenes: unused here
    monkeypatch.delenv("OCOG_DUCKDB", raising=False)
    assert main(["compress", "sample", "--steps", "4", *TINY_FLAGS]) == 0
    out, err = capsys.readouterr()
    assert "preparing the sample" in err and "writing variant optimal_local" in err
    assert "4 steps" in out and "16-bit codes" in out and "(2 rows)" in out
    for method in ("hash", "random_codes"):
        assert re.search(rf"^{method} +16 +10 ", out, re.M), method
    lon, lat = re.search(r"ocog similar --by hash --lon (\S+) --lat (\S+)", out).groups()

    assert main(["similar", "--by", "hash", "--lon", lon, "--lat", lat, "--k", "5",
                 "--json"]) == 0  # fmt: skip
    doc = json.loads(capsys.readouterr().out)
    assert doc["dataset"] == "sample" and doc["method"] == "hamming" and doc["dim"] == 16
    assert len(doc["matches"]) == 5
    names = set(CLASSES.values())
    assert doc["query_patch"]["label_name"] in names
    scores = [m["score"] for m in doc["matches"]]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert all(m["label_name"] in names for m in doc["matches"])

    assert main(["similar", "--by", "hash", "--lon", lon, "--lat", lat, "--geojson"]) == 0
    geo = json.loads(capsys.readouterr().out)
    assert geo["type"] == "FeatureCollection" and len(geo["features"]) == 1 + 10

    assert main(["query", "select patches, code_bits from compressed_archives", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert len(rows) == 1 and rows[0]["code_bits"] == 16 and rows[0]["patches"] > 0
