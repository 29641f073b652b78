"""ISPRS Vaihingen: 9 cm IRRG orthophoto tiles with RGB-coded ground truth -> prepared dataset.

The ISPRS archives (see ocog_lib.data.external) hold `top/top_mosaic_09cm_area<N>.tif`
(3 bands: near infrared, red, green; uint8) and ground truth with the *same* file name in
another folder (`gts_for_participants/`, or the root of
ISPRS_semantic_labeling_Vaihingen_ground_truth_COMPLETE.zip); the eroded variant is named
`top_mosaic_09cm_area<N>_noBoundary.tif`. An image is one whose folder is `top`; a label is
the same name anywhere else. When several folders hold a label of one area, the folder
with the most labels wins (COMPLETE over the participants' subset).

The tiles carry no georeferencing. Vaihingen_dsm_tiles_geoinfo.zip has a world file per
area (`dsm_09cm_matching_area<N>.tfw`, the DSM grid matches the orthophoto's); with it the
prepared tiles get their transform, and a CRS from a .prj or .vrt beside it or the `crs`
option. Without it they are prepared on their pixel grid (noted in the manifest).

Classes are ISPRS's six (ocog_lib.data.rgb_masks); boundaries (black) and unknown
colours are 255. Areas without ground truth are left out (counted as unlabeled).
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

DATASET = "vaihingen"
BAND_NAMES = ("nir", "red", "green")
_IMAGE = re.compile(r"^top_mosaic_09cm_area(\d+)\.tiff?$", re.IGNORECASE)
_ERODED = re.compile(r"^top_mosaic_09cm_area(\d+)_noBoundary\.tiff?$", re.IGNORECASE)
_WORLD = re.compile(r"^(?:dsm_09cm_matching|top_mosaic_09cm)_area(\d+)\.tfw$", re.IGNORECASE)


@dataclass(frozen=True)
class VaihingenConfig:
    eroded: bool = False  # use the *_noBoundary ground truth (boundaries ignored)
    crs: str | None = None  # CRS of world-file georeferencing when no .prj/.vrt says
    max_unknown_fraction: float = 0.01  # label pixels of unknown colour before a skip
    limit: int | None = None  # prepare at most this many areas (quick tries)


def _area(n: str) -> str:
    return f"area{int(n)}"


def prepare_vaihingen(raw_dir: Path, out_dir: Path, config: VaihingenConfig = VaihingenConfig(),
                      progress: Callable[[str], None] | None = None) -> PreparedDataset:
    """Scenes, masks and manifest.json of Vaihingen from the raw ISPRS files under raw_dir."""
    raw_dir = Path(raw_dir)
    files, nested = find_raw_files(raw_dir)
    images, labels, worlds = {}, [], []
    for f in files:
        m = _IMAGE.match(f.name)
        if m and Path(f.folder.replace("!", "/")).name.lower() == "top":
            images[_area(m.group(1))] = f
        elif m and not config.eroded:
            labels.append((_area(m.group(1)), f))
        elif (e := _ERODED.match(f.name)) and config.eroded:
            labels.append((_area(e.group(1)), f))
        elif w := _WORLD.match(f.name):
            worlds.append((_area(w.group(1)), f))
    if not images:
        raise missing_raw(raw_dir, DATASET, "orthophotos top/top_mosaic_09cm_area<N>.tif",
                          nested)
    chosen = prefer_largest_folder(labels)
    world = prefer_largest_folder(worlds)
    pairs = [Pair(name=area, image=img, mask=chosen[area], tile_id=area,
                  world_file=world.get(area))
             for area, img in images.items() if area in chosen]
    if not pairs:
        gt = "*_noBoundary.tif eroded" if config.eroded else "top_mosaic_09cm_area<N>.tif"
        raise missing_raw(raw_dir, DATASET, f"ground truth ({gt}) for any of "
                                            f"{len(images)} orthophotos", nested)
    return write_isprs(DATASET, BAND_NAMES, "aerial IRRG 9 cm",
                       "ISPRS Vaihingen 2D semantic labeling: IRRG orthophotos (nir, red, green; "
                       "uint8)",
                       config, pairs, out_dir, raw_dir=raw_dir, files=files,
                       unlabeled=len(images) - len(pairs), progress=progress)
