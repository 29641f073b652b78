"""ISPRS Potsdam: 5 cm orthophoto tiles with RGB-coded labels -> prepared dataset.

The ISPRS archives (see ocog_lib.data.external) hold `top_potsdam_<a>_<b>_RGBIR.tif`
(4_Ortho_RGBIR: red, green, blue, near infrared), `_RGB.tif` (2_Ortho_RGB) or `_IRRG.tif`
(3_Ortho_IRRG), 6000 x 6000 px, uint8, and labels `top_potsdam_<a>_<b>_label.tif`
(5_Labels_all, or 5_Labels_for_participants) or `_label_noBoundary.tif` (eroded). One
imagery kind makes a dataset (every image must have the same bands): the configured one,
else the first present of RGBIR, RGB, IRRG. Tile ids are normalised ("02_10" = "2_10").

The tiles are georeferenced (GeoTIFF tags, or a .tfw beside them, which GDAL reads);
labels are decoded on the image's grid. Classes are ISPRS's six (ocog_lib.data.rgb_masks);
boundaries (black) and unknown colours are 255.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ocog_lib.data.isprs import write_isprs
from ocog_lib.data.prepare import (
    Pair,
    PreparedDataset,
    find_raw_files,
    missing_raw,
    prefer_largest_folder,
)
from ocog_lib.errors import InputError

DATASET = "potsdam"
IMAGERY = {
    "RGBIR": ("red", "green", "blue", "nir"),
    "RGB": ("red", "green", "blue"),
    "IRRG": ("nir", "red", "green"),
}
_IMAGE = re.compile(r"^top_potsdam_(\d+)_(\d+)_(RGBIR|RGB|IRRG)\.tiff?$", re.IGNORECASE)
_LABEL = re.compile(r"^top_potsdam_(\d+)_(\d+)_label(_noBoundary)?\.tiff?$", re.IGNORECASE)


@dataclass(frozen=True)
class PotsdamConfig:
    imagery: str | None = None  # RGBIR, RGB or IRRG; None = the first present in that order
    eroded: bool = False  # use the *_label_noBoundary ground truth (boundaries ignored)
    crs: str | None = None  # CRS when an image has only a world file and no .prj
    max_unknown_fraction: float = 0.01
    limit: int | None = None  # prepare at most this many tiles (quick tries)


def _tile(a: str, b: str) -> str:
    return f"{int(a)}_{int(b)}"


def prepare_potsdam(raw_dir: Path, out_dir: Path, config: PotsdamConfig = PotsdamConfig(),
                    progress: Callable[[str], None] | None = None) -> PreparedDataset:
    """Scenes, masks and manifest.json of Potsdam from the raw ISPRS files under raw_dir."""
    raw_dir = Path(raw_dir)
    if config.imagery is not None and config.imagery.upper() not in IMAGERY:
        raise InputError(f"imagery {config.imagery!r}", f"valid: {', '.join(IMAGERY)}")
    files, nested = find_raw_files(raw_dir)
    by_kind: dict[str, list] = {k: [] for k in IMAGERY}
    labels = []
    for f in files:
        if m := _IMAGE.match(f.name):
            by_kind[m.group(3).upper()].append((_tile(m.group(1), m.group(2)), f))
        elif (m := _LABEL.match(f.name)) and bool(m.group(3)) == config.eroded:
            labels.append((_tile(m.group(1), m.group(2)), f))
    kind = config.imagery.upper() if config.imagery else next(
        (k for k in IMAGERY if by_kind[k]), "RGBIR")
    images = prefer_largest_folder(by_kind[kind])
    if not images:
        raise missing_raw(raw_dir, DATASET, f"orthophotos top_potsdam_<a>_<b>_{kind}.tif",
                          nested)
    chosen = prefer_largest_folder(labels)
    pairs = [Pair(name=f"top_potsdam_{tile}", image=img, mask=chosen[tile], tile_id=tile)
             for tile, img in images.items() if tile in chosen]
    if not pairs:
        gt = "_label_noBoundary.tif" if config.eroded else "_label.tif"
        raise missing_raw(raw_dir, DATASET, f"labels top_potsdam_<a>_<b>{gt} for any of "
                                            f"{len(images)} {kind} tiles", nested)
    return write_isprs(DATASET, IMAGERY[kind], f"aerial {kind} 5 cm",
                       f"ISPRS Potsdam 2D semantic labeling: {kind} orthophotos "
                       f"({', '.join(IMAGERY[kind])}; uint8)",
                       config, pairs, out_dir, raw_dir=raw_dir, files=files,
                       unlabeled=len(images) - len(pairs), progress=progress)
