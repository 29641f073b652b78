"""What the two ISPRS 2D labeling datasets (Vaihingen, Potsdam) share once their files are
paired: six classes decoded from RGB-coded ground truth, the same ignore index and notes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ocog_lib.data.prepare import DatasetSpec, Pair, PreparedDataset, siblings, write_prepared
from ocog_lib.data.rgb_masks import IGNORE_INDEX, ISPRS_CLASSES, isprs_decoder


class IsprsConfig(Protocol):
    eroded: bool
    crs: str | None
    max_unknown_fraction: float
    limit: int | None


def write_isprs(
    dataset: str,
    band_names: tuple[str, ...],
    sensor: str,
    imagery: str,
    config: IsprsConfig,
    pairs: list[Pair],
    out_dir: Path,
    *,
    raw_dir: Path,
    files: list,
    unlabeled: int,
    progress: Callable[[str], None] | None = None,
) -> PreparedDataset:
    """Write an ISPRS dataset's scenes, masks and manifest; `imagery` opens its notes."""
    spec = DatasetSpec(
        dataset=dataset,
        classes={cid: name for cid, (name, _) in ISPRS_CLASSES.items()},
        band_names=band_names,
        sensor=sensor,
        notes=(imagery + ", ground truth decoded from RGB colours"
               + (" (eroded: boundaries ignored)" if config.eroded else "")
               + f"; {IGNORE_INDEX} = boundary or unknown colour. Research use only, no "
               "redistribution (see docs/data.md)."),
        decode=isprs_decoder().decode,
        mask_bands=(1, 2, 3),
        ignore_index=IGNORE_INDEX,
        max_unknown_fraction=config.max_unknown_fraction,
        crs=config.crs,
    )
    return write_prepared(spec, pairs, out_dir, raw_dir=raw_dir, files=siblings(files),
                          unlabeled=unlabeled, limit=config.limit, progress=progress)
