"""`ocog compress`: train the codec and its hash head, archive a dataset, score hash search.

Every CompressConfig field is a flag, its default and help read from compress/config.py (a
light module), so `--help` shows exactly what the library runs with.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from ocog_lib.cli import types as T
from ocog_lib.cli.embed import (
    QUALITY_COLUMNS,
    TrainingProgress,
    example_point,
    quality_table,
    rounded,
)
from ocog_lib.settings import Settings

_CONFIG = "ocog_lib.compress.config"
# value types of the fields whose rule is not "a positive number" or "a name"
_TYPES = {"seed": T.non_negative_int, "workers": T.non_negative_int,
          "recon_share": T.float_range(0.0, 1.0), "rate_share": T.float_range(0.0, 1.0),
          "val_fraction": T.float_range(0.0, 1.0), "patch_size": T.at_least(8),
          "hash_bits": T.int_range(*T.constant(_CONFIG, "HASH_BITS"))}  # fmt: skip


def register_compress(subparsers: argparse._SubParsersAction) -> None:
    config = T.constant(_CONFIG, "CompressConfig")
    helps = T.constant(_CONFIG, "FIELD_HELP")
    d = T.defaults(config)
    p = subparsers.add_parser(
        "compress", help="retrieval without decoding: a learned codec, its archive, hash search",
        description="Train (or continue) a learned codec and a hash head on its quantised "
        "latents (reconstruction, then rate + distortion, then hashing) on patches streamed "
        "from a dataset's COG variant; archive every grid patch as a real bitstream and a "
        "hash code (DuckDB compressed_patches, with rate, PSNR/SSIM and bytes against "
        "lossless ZSTD/LERC_ZSTD tiles and JPEG 2000 in compressed_archives); write "
        "precision@k and mAP@k of the hash codes and of random codes to retrieval_quality. "
        "The sample's files are written first when missing. Then: `ocog similar --by hash "
        "--lon X --lat Y`.",
    )
    p.add_argument("dataset", nargs="?", type=T.name, default=d["dataset"],
                   help=f"{helps['dataset']} (default: {d['dataset']})")
    T.config_flags(p, config, helps, types=_TYPES)
    p.add_argument("--k", type=T.positive_int,
                   default=T.constant("ocog_lib.embed.pipeline", "QUALITY_K"),
                   help="neighbours scored per held-out query (precision@k, mAP@k)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_compress)


def _cmd_compress(args: argparse.Namespace) -> int:
    from ocog_lib.compress.config import CompressConfig
    from ocog_lib.compress.pipeline import compress_and_record

    fields = dataclasses.fields(CompressConfig)
    cfg = CompressConfig(**{f.name: getattr(args, f.name) for f in fields})
    settings = Settings.from_env()
    progress = TrainingProgress(cfg, quiet=args.json)
    try:
        run = compress_and_record(cfg, settings, k=args.k, progress=progress)
    finally:
        progress.close()
    summary = run_summary(run, settings)
    print(json.dumps(summary, default=str) if args.json else format_run(summary))
    return 0


def run_summary(run, settings: Settings) -> dict:
    """The run as one JSON-able object: codec, archive, quality rows, a point to ask."""
    t, a, q = run.training, run.archive, run.quality
    return {
        "dataset": a.dataset, "model_id": t.model_id, "codec_id": a.codec_id,
        "model": str(t.model_path), "device": t.device, "steps": t.steps,
        "stage_steps": list(t.stage_steps), "train_s": round(t.seconds, 2),
        "trained": t.trained, "patches": a.patches, "code_bits": a.code_bits,
        "bpp": round(a.bpp, 4), "psnr_db": round(a.psnr_db, 2), "ssim": rounded(a.ssim),
        "bytes": {"raw": a.raw_bytes, "zstd": a.zstd_bytes, "lerc_zstd": a.lerc_zstd_bytes,
                  "bitstreams": a.bitstream_bytes},
        "lossy": dataclasses.asdict(a.lossy) if a.lossy else None,
        "archive_s": round(a.seconds, 2),
        "quality": [{k: r[k] for k in QUALITY_COLUMNS} for r in q.rows],
        "hash_leads": q.hash_leads, "prepared": list(run.prepared),
        "db": str(settings.results_db),
        "example_point": _example_point(settings, a.dataset, a.codec_id),
    }  # fmt: skip


def _example_point(settings: Settings, dataset: str, codec_id: str) -> dict | None:
    """A point `ocog similar --by hash` answers: a labelled archived patch's centre."""
    from ocog_lib.compress.archive import load_codes

    return example_point(load_codes(settings.results_db, dataset, codec_id))


def format_run(s: dict) -> str:

    b, lossy = s["bytes"], s["lossy"]
    lines = [
        f"codec {s['model_id']} ({s['dataset']}, {s['device']}): {s['steps']} steps "
        f"(stages {'/'.join(map(str, s['stage_steps']))}) in {s['train_s']:.0f} s "
        f"({'trained' if s['trained'] else 'budget spent, reused'}) -> {s['model']}",
        f"archive: {s['patches']} patches, {s['code_bits']}-bit codes, {s['bpp']:.3f} bpp, "
        f"PSNR {s['psnr_db']:.2f} dB, SSIM {s['ssim']} -> {s['db']} "
        "(tables compressed_patches, compressed_archives)",
        f"bytes: raw {b['raw']}, ZSTD {b['zstd']}, LERC_ZSTD {b['lerc_zstd']}, learned "
        f"{b['bitstreams']}; " + (f"{lossy['codec']} at {lossy['bpp']:.3f} bpp: PSNR "
                                  f"{lossy['psnr_db']:.2f} dB" if lossy else
                                  "JPEG 2000 cannot reach the codec's rate"),
        f"retrieval_quality (held-out patches, Hamming, k={s['quality'][0]['k']}):",
    ]
    table = quality_table(s["quality"])
    verdict = "hash codes beat random codes" if s["hash_leads"] else (
        "hash codes do NOT beat random codes: train longer (--budget-s)")
    point = s["example_point"]
    ask = (f"\nfind places like one: ocog similar --by hash --lon {point['lon']} "
           f"--lat {point['lat']}" if point else "")  # fmt: skip
    return "\n".join(lines) + "\n" + table + f"\n{verdict}{ask}"

