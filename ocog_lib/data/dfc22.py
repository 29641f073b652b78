"""IEEE GRSS Data Fusion Contest 2022 (MiniFrance): BD ORTHO tiles with Urban Atlas labels.

The contest archives (see ocog_lib.data.external) hold, per region,
`labeled_train/<region>/BDORTHO/<name>.tif` (RGB, uint8, 50 cm, Lambert-93),
`.../RGEALTI/<name>_RGEALTI.tif` (DEM, 1 m; not used: another grid) and
`.../UrbanAtlas/<name>_UA2012.tif` (one band of Urban Atlas 2012 codes 0..15 on the
image's grid). `val/` and `unlabeled_train/` have images only; those are counted as
unlabeled and left out. Items are named `<region>_<name>`.

Class ids are the contest's codes minus one (0 = urban fabric ... 14 = clouds and
shadows), so they run 0..14 like every other ocog dataset; code 0, "no information",
becomes the ignore index 255, as do codes above 15 (counted: a file with many of them is
skipped as not being a label).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ocog_lib.data.prepare import (
    DatasetSpec,
    Pair,
    PreparedDataset,
    find_raw_files,
    missing_raw,
    safe_name,
    siblings,
    write_prepared,
)
from ocog_lib.data.rgb_masks import IGNORE_INDEX, DecodeStats

DATASET = "dfc22"
BAND_NAMES = ("red", "green", "blue")
# the contest's codes 1..15 (0 = no information)
CODES = (
    "urban_fabric",
    "industrial_commercial_public_military_private_transport_units",
    "mine_dump_construction_sites",
    "artificial_non_agricultural_vegetated_areas",
    "arable_land",
    "permanent_crops",
    "pastures",
    "complex_and_mixed_cultivation_patterns",
    "orchards_at_the_fringe_of_urban_classes",
    "forests",
    "herbaceous_vegetation_associations",
    "open_spaces_with_little_or_no_vegetation",
    "wetlands",
    "water",
    "clouds_and_shadows",
)
CLASSES = dict(enumerate(CODES))
NO_INFORMATION = 0


@dataclass(frozen=True)
class Dfc22Config:
    max_unknown_fraction: float = 0.01  # label pixels with codes above 15 before a skip
    limit: int | None = None  # prepare at most this many tiles (quick tries)


def _lut() -> np.ndarray:
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    lut[1 : len(CODES) + 1] = np.arange(len(CODES), dtype=np.uint8)
    return lut


_LUT = _lut()


def decode_codes(codes: np.ndarray) -> tuple[np.ndarray, DecodeStats]:
    """(1, h, w) Urban Atlas codes -> (h, w) class ids (code - 1; 0 and unknown -> 255)."""
    band = codes[0]
    unknown = (band < 0) | (band > len(CODES))
    stats = DecodeStats(pixels=band.size, unknown=int(unknown.sum()), describe=str)
    if stats.unknown:
        values, counts = np.unique(band[unknown], return_counts=True)
        stats.colours.update({int(v): int(c) for v, c in zip(values, counts, strict=True)})
    index = band if band.dtype == np.uint8 else np.where(unknown, 255, band).astype(np.uint8)
    return _LUT[index], stats


def prepare_dfc22(raw_dir: Path, out_dir: Path, config: Dfc22Config = Dfc22Config(),
                  progress: Callable[[str], None] | None = None) -> PreparedDataset:
    """Scenes, masks and manifest.json of DFC-22 from the contest's files under raw_dir."""
    raw_dir = Path(raw_dir)
    files, nested = find_raw_files(raw_dir)
    images: dict[str, tuple[str, object]] = {}
    labels: dict[str, object] = {}
    for f in files:
        parts = f.display.replace("!", "/").split("/")
        if len(parts) < 3 or not f.name.lower().endswith((".tif", ".tiff")):
            continue
        kind, region, stem = parts[-2], parts[-3], Path(f.name).stem
        if kind == "BDORTHO":
            images[f"{region}/{stem}"] = (region, f)
        elif kind == "UrbanAtlas" and stem.endswith("_UA2012"):
            labels[f"{region}/{stem.removesuffix('_UA2012')}"] = f
    if not images:
        raise missing_raw(raw_dir, DATASET, "images <region>/BDORTHO/<name>.tif", nested)
    pairs = [Pair(name=safe_name(f"{region}_{Path(img.name).stem}"), image=img,
                  mask=labels[key], tile_id=Path(img.name).stem)
             for key, (region, img) in images.items() if key in labels]
    if not pairs:
        raise missing_raw(raw_dir, DATASET, f"labels <region>/UrbanAtlas/<name>_UA2012.tif "
                                            f"for any of {len(images)} images", nested)
    spec = DatasetSpec(
        dataset=DATASET,
        classes=dict(CLASSES),
        band_names=BAND_NAMES,
        sensor="aerial RGB 50 cm (IGN BD ORTHO)",
        notes=("IEEE GRSS DFC 2022 / MiniFrance: BD ORTHO RGB (uint8), Urban Atlas 2012 "
               f"labels; class id = contest code - 1, code 0 (no information) -> "
               f"{IGNORE_INDEX}. See docs/data.md for terms and citation."),
        decode=decode_codes,
        mask_bands=(1,),
        ignore_index=IGNORE_INDEX,
        max_unknown_fraction=config.max_unknown_fraction,
    )
    return write_prepared(spec, pairs, out_dir, raw_dir=raw_dir, files=siblings(files),
                          unlabeled=len(images) - len(pairs), limit=config.limit,
                          progress=progress)
