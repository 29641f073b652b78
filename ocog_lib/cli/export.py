"""`ocog export ...`: training packages (the same library calls as the hdf5_packages asset)."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

from ocog_lib.cli import types as T
from ocog_lib.settings import Settings

_EXPORT = ("ocog_lib.hdf5.export", "ExportConfig")
_CHECK = ("ocog_lib.hdf5.validate", "compare_with_sources")


def register_export(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a dataset to a training package",
        description="Write COG windows to a package other tools can train from.",
    )
    sub = p.add_subparsers(dest="export_cmd", required=True, metavar="{hdf5,check}")
    _register_hdf5(sub)
    _register_check(sub)


def _register_hdf5(sub: argparse._SubParsersAction) -> None:
    h = sub.add_parser(
        "hdf5",
        help="a prepared dataset to HDF5 in the MMEarth layout (see docs/hdf5.md)",
        description="Cut windows from a prepared dataset (or one of its COG variants) with the "
        "engine's sampler and reader, and write PATH.h5 with PATH_band_stats.json, "
        "PATH_splits.json and PATH_tile_info.json beside it. Skipped when a complete package "
        "made from the same inputs is already there (--force rewrites it, to the same bytes).",
    )
    _add_hdf5_inputs(h)
    _add_hdf5_sampling(h)
    _add_hdf5_writing(h)
    h.set_defaults(func=_cmd_hdf5)


def _add_hdf5_inputs(h: argparse.ArgumentParser) -> None:
    """What to export, and where to."""
    h.add_argument("--dataset", default="sample", help="prepared dataset")
    h.add_argument(
        "--output",
        type=Path,
        default=None,
        help="the .h5 file (default: $OCOG_DATA_DIR/hdf5/<dataset>/data_<dataset>.h5)",
    )
    h.add_argument(
        "--variant", default="", help="read this written COG variant instead of the prepared files"
    )
    h.add_argument(
        "--roles", type=T.name_list, default=("scene",),
        help="comma-separated manifest roles to export (default: scene)",
    )


def _add_hdf5_sampling(h: argparse.ArgumentParser) -> None:
    """Which windows are cut (defaults from ExportConfig)."""
    d = functools.partial(T.default, *_EXPORT)
    h.add_argument("--patch-size", type=T.positive_int, default=d("patch_size"),
                   help="window edge in px")
    h.add_argument("--sampler", default=d("sampler"), choices=["grid", "random", "block"],
                   help="grid (full coverage) or the engine's random / block sampler")
    h.add_argument(
        "--samples",
        type=T.non_negative_int,
        default=d("samples"),
        help="windows: 0 = grid all / random,block 1024; with grid a seeded subset",
    )
    h.add_argument("--seed", type=T.non_negative_int, default=d("seed"),
                   help="sampler and split seed")


def _add_hdf5_writing(h: argparse.ArgumentParser) -> None:
    """How the package is compressed and split, and what is printed (defaults: ExportConfig)."""
    d = functools.partial(T.default, *_EXPORT)
    h.add_argument("--compression", default=d("compression"), help="HDF5 filter",
                   choices=T.constant("ocog_lib.hdf5.layout", "COMPRESSIONS"))
    h.add_argument("--gzip-level", type=T.int_range(0, 9), default=d("gzip_level"),
                   help="gzip level 0-9")
    h.add_argument(
        "--split-block",
        type=T.non_negative_int,
        default=d("split_block"),
        help="px edge of the spatial split blocks; 0 = 4 x patch size",
    )
    h.add_argument(
        "--no-split-guard",
        action="store_true",
        help="keep windows that reach into a block of another split",
    )
    h.add_argument("--force", action="store_true", help="rewrite even when up to date")
    h.add_argument("--json", action="store_true", help="print one JSON object")


def _register_check(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser(
        "check",
        help="validate a package and compare samples with its source COGs",
        description="Check shapes, dtypes, splits and sidecars of PATH.h5, then re-read a seeded "
        "random subset of samples from the source COGs with GDAL and compare pixel for pixel.",
    )
    c.add_argument("path", type=Path, help="the .h5 file")
    c.add_argument("--samples", type=T.positive_int, default=T.default(*_CHECK, "samples"),
                   help="samples to compare")
    c.add_argument("--seed", type=T.non_negative_int, default=T.default(*_CHECK, "seed"),
                   help="which samples")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.set_defaults(func=_cmd_check)


def _cmd_hdf5(args: argparse.Namespace) -> int:
    from ocog_lib.hdf5.export import ExportConfig, export_dataset

    config = ExportConfig(
        patch_size=args.patch_size,
        sampler=args.sampler,
        samples=args.samples,
        seed=args.seed,
        compression=args.compression,
        gzip_level=args.gzip_level,
        split_block=args.split_block,
        split_guard=not args.no_split_guard,
    )
    result = export_dataset(
        Settings.from_env(),
        args.dataset,
        args.output,
        config,
        variant=args.variant,
        roles=args.roles,
        force=args.force,
        progress=lambda m: print(m, file=sys.stderr),
    )
    summary = result.summary()
    if args.json:
        print(json.dumps(summary))
        return 0
    state = "up to date, skipped" if result.skipped else f"written in {result.seconds:.1f} s"
    print(f"{result.path}: {state}")
    print(
        f"  samples {result.samples} ({result.dropped} left out by the split guard), "
        f"splits {result.splits}"
    )
    for name, shape in result.modalities.items():
        print(f"  {name}: {tuple(shape)}")
    print(
        f"  {result.h5_bytes / 1e6:.1f} MB ({result.compression}), "
        f"{result.ratio_to_cog_bytes:.2f} x the COG bytes, "
        f"compression ratio {result.compression_ratio:.2f}"
    )
    for kind, path in result.sidecars.items():
        print(f"  {kind}: {path}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from ocog_lib.hdf5.validate import compare_with_sources

    check = compare_with_sources(args.path, samples=args.samples, seed=args.seed)
    if args.json:
        print(
            json.dumps(
                {
                    "path": str(args.path),
                    "passed": check.passed,
                    "checked": check.checked,
                    "mismatches": check.mismatches,
                }
            )
        )
    else:
        print(
            f"{args.path}: valid; {len(check.checked)} samples compared with their COGs, "
            f"{len(check.mismatches)} differ"
        )
        for line in check.mismatches:
            print(f"  {line}")
    return 0 if check.passed else 1
