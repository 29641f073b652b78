"""`ocog embed`: train the patch encoder, embed a whole dataset, index it, score retrieval.

Every EmbedConfig field is a flag, its default and its help read from embed/config.py (a
light module), so `--help` shows exactly what the library runs with.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from ocog_lib.cli import types as T
from ocog_lib.settings import Settings

_CONFIG = "ocog_lib.embed.config"
_PIPELINE = "ocog_lib.embed.pipeline"
# value types of the fields whose rule is not "a positive number" or "a name"
_TYPES = {"seed": T.non_negative_int, "workers": T.non_negative_int, "dim": T.at_least(2),
          "weight_decay": T.non_negative_float, "h3_resolution": T.int_range(0, 15),
          "val_fraction": T.float_range(0.0, 1.0)}  # fmt: skip


def register_embed(subparsers: argparse._SubParsersAction) -> None:
    config = T.constant(_CONFIG, "EmbedConfig")
    helps = T.constant(_CONFIG, "FIELD_HELP")
    d = T.defaults(config)
    choices = {"objective": T.constant(_CONFIG, "OBJECTIVES")}
    p = subparsers.add_parser(
        "embed", help="find places like this: train an encoder, embed a dataset, score it",
        description="Train (or continue) a small ResNet patch encoder on neighbouring patches "
        "streamed from a dataset's COG variant, embed every grid patch of the dataset (unit "
        "vectors keyed by H3 cell, stored in DuckDB's patch_embeddings), build its HNSW index "
        "and write precision@k and mAP@k of the encoder and two baselines (random projection, "
        "band statistics) on held-out patches to retrieval_quality. The sample's files are "
        "written first when missing. Then: `ocog similar --lon X --lat Y`.",
    )
    p.add_argument("dataset", nargs="?", type=T.name, default=d["dataset"],
                   help=f"{helps['dataset']} (default: {d['dataset']})")
    T.config_flags(p, config, helps, types=_TYPES, choices=choices)
    p.add_argument("--k", type=T.positive_int, default=T.constant(_PIPELINE, "QUALITY_K"),
                   help="neighbours scored per held-out query (precision@k, mAP@k)")
    p.add_argument("--store", default=None,
                   help="model store: folder or s3://bucket/prefix (default: "
                   "$OCOG_MODEL_STORE, else data/models)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_embed)


def _cmd_embed(args: argparse.Namespace) -> int:
    from ocog_lib.embed.config import EmbedConfig
    from ocog_lib.embed.pipeline import embed_and_record
    from ocog_lib.train.store import model_store

    cfg = EmbedConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(EmbedConfig)})
    settings = Settings.from_env()
    progress = TrainingProgress(cfg, quiet=args.json)
    try:
        run = embed_and_record(cfg, settings, store=model_store(args.store, settings), k=args.k,
                               progress=progress)  # fmt: skip
    finally:
        progress.close()
    summary = run_summary(run, settings)
    print(json.dumps(summary, default=str) if args.json else format_run(run, summary))
    return 0


class TrainingProgress:
    """Stage lines on stderr and a bar over the training budget (seconds)."""

    def __init__(self, cfg, *, quiet: bool) -> None:
        self.cfg, self.quiet, self.bar, self.loss = cfg, quiet, None, None

    def __call__(self, ev: dict) -> None:
        if self.quiet:
            return
        if ev["event"] == "stage":
            self.close()
            print(f"  {ev['message']}", file=sys.stderr, flush=True)
        elif ev["event"] == "checkpoint" and ev.get("loss") is not None:
            self.loss = ev["loss"]  # the mean loss since the previous checkpoint
        elif ev["event"] == "step":
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=round(self.cfg.budget_s), unit="s", dynamic_ncols=True,
                                file=sys.stderr, bar_format="{l_bar}{bar}| {n:.0f}/{total} s"
                                "{postfix}")  # fmt: skip
            self.bar.update(min(ev["seconds"], self.cfg.budget_s) - self.bar.n)
            loss = ev.get("loss", self.loss)
            shown = {"step": ev["step"]} | ({} if loss is None else {"loss": f"{loss:.3f}"})
            self.bar.set_postfix(shown, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run_summary(run, settings: Settings) -> dict:
    """The run as one JSON-able object: encoder, set, index, quality rows, a point to ask."""
    enc, es, ix = run.encoder, run.embeddings, run.index
    point = example_point(es.embeddings)
    return {
        "dataset": es.dataset, "model_id": es.model_id, "model": enc.model_uri,
        "device": enc.device, "steps": enc.steps, "train_s": round(enc.seconds, 2),
        "trained": enc.trained, "resumed_from": enc.resumed_from, "loss": enc.loss,
        "triplets_per_s": round(enc.triplets_per_s, 1), "data_wait": round(enc.data_wait, 3),
        "embeddings": es.rows, "dim": es.dim, "h3_resolution": es.h3_resolution,
        "labelled": es.labelled, "embed_s": round(es.seconds, 2),
        "index": {"path": str(ix.path), "rows": ix.rows, "bytes": ix.bytes,
                  "seconds": round(ix.seconds, 3), "action": ix.action},
        "quality": [{k: r[k] for k in QUALITY_COLUMNS} for r in run.quality.rows],
        "encoder_leads": run.quality.encoder_leads, "prepared": list(run.prepared),
        "db": str(settings.results_db), "example_point": point,
    }  # fmt: skip


def example_point(es) -> dict | None:
    """A labelled patch's centre near the middle of the set (anything with labels, lon and
    lat: embeddings, an archive's codes): a point `ocog similar` answers."""
    import numpy as np

    labelled = np.flatnonzero(np.asarray(es.labels) >= 0)
    if not len(labelled):
        return None
    i = int(labelled[len(labelled) // 2])
    return {"lon": round(float(es.lon[i]), 5), "lat": round(float(es.lat[i]), 5)}


def format_run(run, summary: dict) -> str:

    s, ix = summary, summary["index"]
    lines = [
        f"model {s['model_id']} ({s['dataset']}, {s['device']}): {s['steps']} steps in "
        f"{s['train_s']:.0f} s ({'trained' if s['trained'] else 'budget spent, reused'}), "
        f"{s['triplets_per_s']:.0f} triplets/s, loss {rounded(s['loss'])} -> {s['model']}",
        f"embeddings: {s['embeddings']} patches ({s['labelled']} labelled), {s['dim']}-d, "
        f"H3 resolution {s['h3_resolution']}, {s['embed_s']:.1f} s -> {s['db']} "
        "(table patch_embeddings)",
        f"index: {ix['rows']} rows, {ix['bytes']} bytes, {ix['action']} in {ix['seconds']:.2f} s"
        f" -> {ix['path']}",
        f"retrieval_quality (held-out patches, k={run.quality.k}):",
    ]
    table = quality_table(s["quality"])
    verdict = "the encoder leads both baselines" if s["encoder_leads"] else (
        "the encoder does NOT lead every baseline: train longer (--budget-s)")
    point = s["example_point"]
    ask = (f"\nfind places like one: ocog similar --lon {point['lon']} --lat {point['lat']}"
           if point else "")  # fmt: skip
    return "\n".join(lines) + "\n" + table + f"\n{verdict}{ask}"


QUALITY_COLUMNS = ("method", "dim", "k", "precision_at_k", "map_at_k", "n_queries")


def quality_table(rows: list[dict]) -> str:
    """retrieval_quality rows as the terminal shows them (floats to 4 places)."""
    from ocog_lib import results

    return results.format_table(QUALITY_COLUMNS, [[rounded(q[c]) for c in QUALITY_COLUMNS]
                                                  for q in rows])  # fmt: skip


def rounded(value):
    """Floats to 4 places for the terminal; other values as they are."""
    return round(value, 4) if isinstance(value, float) else value
