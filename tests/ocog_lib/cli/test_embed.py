"""`ocog embed`: every EmbedConfig field a flag with the library's default; on an empty data
folder it writes the sample, trains, embeds, indexes and scores, and `ocog similar` then
answers for a point of the sample with cells, scores and labels."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch

from ocog_lib.cli.main import build_parser, main
from ocog_lib.data.sample import CLASSES
from ocog_lib.embed.config import EmbedConfig
from ocog_lib.embed.pipeline import QUALITY_K

TINY_FLAGS = ["--patch-size", "32", "--neighbour-px", "16", "--distant-px", "96",
              "--batch-size", "8", "--width", "8", "--batches-per-epoch", "4",
              "--norm-batches", "1", "--max-val-patches", "128", "--device", "cpu"]  # fmt: skip


def _embed_parser():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices["embed"]


def test_every_config_field_is_a_flag_with_its_default(capsys):
    actions = {a.dest: a for a in _embed_parser()._actions}
    for f in dataclasses.fields(EmbedConfig):
        assert actions[f.name].default == f.default, f.name
        assert actions[f.name].help, f.name
    assert actions["k"].default == QUALITY_K
    with pytest.raises(SystemExit):
        main(["embed", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--budget-s BUDGET_S seconds of training" in text and "(default: 300.0)" in text
    assert "--augment, --no-augment" in text and "(default: sample)" in text


@pytest.mark.parametrize("argv", [["--dim", "1"], ["--objective", "cosine"],
                                  ["--budget-s", "0"], ["--h3-resolution", "16"]])
def test_bad_values_are_refused_by_argparse(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["embed", *argv])
    assert exc.value.code == 2 and argv[0] in capsys.readouterr().err


def test_library_errors_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OCOG_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("OCOG_DUCKDB", raising=False)
    assert main(["embed", "vaihingen", "--steps", "1"]) == 1
    last = capsys.readouterr().err.splitlines()[-1]  # after the stage lines
    assert last.startswith("ocog: error: ") and "cog_variants[vaihingen|optimal_local]" in last


def test_fresh_folder_embed_then_similar_then_query(tmp_path, monkeypatch, capsys):
    torch.set_num_threads(2)
    monkeypatch.setenv("OCOG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OCOG_BENCH_SIZE", "64")  # the sample's bench scenes: unused here
    monkeypatch.delenv("OCOG_DUCKDB", raising=False)
    monkeypatch.delenv("OCOG_MODEL_STORE", raising=False)
    assert main(["embed", "sample", "--steps", "3", *TINY_FLAGS]) == 0
    out, err = capsys.readouterr()
    assert "preparing the sample" in err and "writing variant optimal_local" in err
    assert "3 steps" in out and "H3 resolution 8" in out and "(3 rows)" in out
    for method, dim in (("encoder", 16), ("random_projection", 16), ("band_stats", 8)):
        assert re.search(rf"^{method} +{dim} +10 ", out, re.M), method
    lon, lat = re.search(r"ocog similar --lon (\S+) --lat (\S+)", out).groups()

    assert main(["similar", "--lon", lon, "--lat", lat, "--k", "5", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["dataset"] == "sample" and doc["method"] == "hnsw" and len(doc["matches"]) == 5
    names = set(CLASSES.values())
    assert doc["query_patch"]["label_name"] in names
    for m in doc["matches"]:
        assert m["cell"].startswith("88") and -1 <= m["score"] <= 1 + 1e-6
        assert m["label_name"] in names and m["cell"] != doc["query_patch"]["cell"]
    scores = [m["score"] for m in doc["matches"]]
    assert scores == sorted(scores, reverse=True)

    assert main(["query", "select method, baseline, k from retrieval_quality order by baseline, "
                 "method desc", "--json"]) == 0  # fmt: skip
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [(r["method"], r["baseline"], r["k"]) for r in rows] == [
        ("encoder", False, 10), ("random_projection", True, 10), ("band_stats", True, 10)]
