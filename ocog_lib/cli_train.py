"""`ocog train`: the trained_models asset's code path from a shell, with a progress bar."""

from __future__ import annotations

import argparse
import json

from ocog_lib.settings import Settings


def register_train(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train a U-Net on a dataset streamed under one loader config",
        description="Train a compact U-Net on a dataset's variant files, evaluate mIoU on "
        "held-out patches, store the model ($OCOG_MODEL_STORE, default data/models) and "
        "append rows to training_runs (see the model_comparison view).",
    )
    p.add_argument("--dataset", default="sample")
    p.add_argument("--config", default="local-optimal",
                   help="loader config: local-default, local-optimal (default), "
                   "remote-default, remote-optimal")
    p.add_argument("--max-time", type=float, default=600.0, help="seconds (default 600)")
    p.add_argument("--iterations", type=int, default=None, help="optimizer steps")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:0 ...")
    p.add_argument("--patch-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--width", type=int, default=16, help="U-Net channels of the first block")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--workers", type=int, default=None, help="DataLoader processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-resume", action="store_true", help="start over, ignore a checkpoint")
    p.add_argument("--store", default=None, help="model store: folder or s3://bucket/prefix")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ocog_lib.train.loop import TrainConfig, train_and_record
    from ocog_lib.train.store import model_store

    cfg = TrainConfig(
        dataset=args.dataset, loader_config=args.config, max_time=args.max_time,
        iterations=args.iterations, device=args.device, patch_size=args.patch_size,
        batch_size=args.batch_size, width=args.width, lr=args.lr,
        eval_every=args.eval_every, workers=args.workers, seed=args.seed,
        resume=not args.no_resume,
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
