"""`ocog train`: the trained_models asset's code path from a shell, with a progress bar."""

from __future__ import annotations

import argparse
import json

from ocog_lib.cli import types as T
from ocog_lib.settings import Settings
from ocog_lib.train.configs import LOADER_CONFIGS, TrainConfig


def register_train(subparsers: argparse._SubParsersAction) -> None:
    """Every flag defaults to TrainConfig's own default."""
    p = subparsers.add_parser(
        "train", help="train a U-Net on a dataset streamed under one loader config",
        description="Train a compact U-Net on a dataset's variant files, evaluate mIoU on "
        "held-out patches, store the model ($OCOG_MODEL_STORE, default data/models) and "
        "append rows to training_runs (see the model_comparison view).",
    )
    d = T.defaults(TrainConfig)
    p.add_argument("--dataset", default=d["dataset"], help="prepared dataset")
    p.add_argument("--config", default=d["loader_config"], choices=LOADER_CONFIGS,
                   help="loader config (*-optimal: the search's best when recorded)")
    p.add_argument("--max-time", type=T.positive_float, default=d["max_time"],
                   help="seconds of training, evaluation included")
    p.add_argument("--iterations", type=T.positive_int, default=d["iterations"],
                   help="optimizer steps (default: until --max-time)")
    p.add_argument("--device", default=d["device"],
                   help="auto (cuda when present, else cpu), cpu, cuda, cuda:0 ...")
    p.add_argument("--patch-size", type=T.positive_int, default=d["patch_size"],
                   help=f"patch edge in px, a multiple of {2 ** d['depth']}")
    p.add_argument("--batch-size", type=T.positive_int, default=d["batch_size"],
                   help="patches per optimizer step")
    p.add_argument("--width", type=T.positive_int, default=d["width"],
                   help="U-Net channels of the first block")
    p.add_argument("--lr", type=T.positive_float, default=d["lr"], help="learning rate")
    p.add_argument("--eval-every", type=T.positive_int, default=d["eval_every"],
                   help="steps between evaluations (and checkpoints)")
    p.add_argument("--workers", type=T.non_negative_int, default=d["workers"],
                   help="DataLoader processes (default: the loader config's)")
    p.add_argument("--seed", type=T.non_negative_int, default=d["seed"], help="seed")
    p.add_argument("--nproc", type=T.positive_int, default=d["nproc"],
                   help="training processes (torch DDP: gloo on CPU, one per GPU with "
                   "NCCL); --batch-size stays the global batch")  # fmt: skip
    p.add_argument("--no-resume", action="store_true", help="start over, ignore a checkpoint")
    p.add_argument("--store", default=None,
                   help="model store: folder or s3://bucket/prefix (default: "
                   "$OCOG_MODEL_STORE, else data/models)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ocog_lib.train.loop import train_and_record
    from ocog_lib.train.store import model_store

    cfg = TrainConfig(
        dataset=args.dataset, loader_config=args.config, max_time=args.max_time,
        iterations=args.iterations, device=args.device, patch_size=args.patch_size,
        batch_size=args.batch_size, width=args.width, lr=args.lr,
        eval_every=args.eval_every, workers=args.workers, seed=args.seed,
        resume=not args.no_resume, nproc=args.nproc,
    )
    settings = Settings.from_env()
    total = args.iterations if args.iterations else None
    bar = tqdm(total=total, unit="step", disable=args.json, dynamic_ncols=True)

    def progress(ev: dict) -> None:
        if ev["event"] == "step":
            bar.update(ev["step"] - bar.n)
        else:
            bar.set_postfix(miou=f"{ev['miou']:.3f}", refresh=False)

    try:
        result = train_and_record(cfg, settings, store=model_store(args.store, settings),
                                  progress=progress)
    finally:
        bar.close()
    summary = dict(
        run=result.run, dataset=result.dataset, loader_config=result.loader_config,
        device=result.device, steps=result.steps, seconds=round(result.seconds, 2),
        miou=result.miou, baseline_miou=result.baseline_miou,
        per_class_iou=result.per_class_iou, samples_per_s=result.samples_per_s,
        data_wait=result.data_wait, model=result.model_uri, resumed_from=result.resumed_from,
    )
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        for k, v in summary.items():
            print(f"{k:15} {v:.4f}" if isinstance(v, float) else f"{k:15} {v}")
    return 0
