"""What a package is called and holds: the names export, validation and readers share.

Keep docs/hdf5.md in step with this module: it is the contract for readers with h5py alone.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit, urlunsplit

FORMAT = "ocog-hdf5"
FORMAT_VERSION = 1

METADATA = "metadata"
LABEL = "label"
SPLITS = ("train", "val", "test")
SIDECARS = ("band_stats", "splits", "tile_info")
COMPRESSIONS = ("gzip", "lzf", "none")

# fields of the compound `metadata` dataset, in order; tile_id first, as MMEarth reads
# `metadata[i][0]` as the key into tile_info.json
METADATA_FIELDS = (
    "tile_id",
    "item",
    "sensor",
    "scene_date",
    "crs",
    "file",
    "row",
    "col",
    "size",
)
METADATA_INTS = {"file": "<i4", "row": "<i8", "col": "<i8", "size": "<i4"}

# root attributes (JSON-encoded where the value is a list or dict)
ATTR_FORMAT = "format"
ATTR_VERSION = "format_version"
ATTR_MODALITIES = "modalities"  # JSON {name: {"shape": [C, H, W], "dtype": "uint16"}}
ATTR_IMAGE = "image_modality"
ATTR_LABEL = "label_modality"  # "" when the package has no labels
ATTR_SCENES = "scenes"  # JSON list; metadata["file"] indexes it
ATTR_SIDECARS = "sidecars"  # JSON {kind: {"name": file name, "sha256": hex}}
ATTR_FINGERPRINT = "fingerprint"
ATTR_NODATA = "nodata"
ATTR_IGNORE = "ignore_index"
ATTR_CLASSES = "classes"
ATTR_PATCH = "patch_size"

# sensor names (ManifestItem.sensor) to MMEarth-style modality names
SENSOR_MODALITIES = {"sentinel-2": "sentinel2", "landsat-8": "landsat8", "landsat-9": "landsat9"}
MIXED_MODALITY = "image"


def image_modality_for(sensors: list[str]) -> str:
    """`sentinel2` when every scene is Sentinel-2 (likewise per sensor), else `image`."""
    kinds = set(sensors)
    if len(kinds) != 1 or not sensors[0]:
        return MIXED_MODALITY
    return SENSOR_MODALITIES.get(sensors[0], sensors[0].replace("-", ""))


def sidecar_uri(package: str, kind: str) -> str:
    """`dir/data_x.h5` -> `dir/data_x_<kind>.json`; URIs keep their scheme and query."""
    if kind not in SIDECARS:
        raise ValueError(f"unknown sidecar kind {kind!r}")
    text = str(package)
    parts = urlsplit(text)
    if parts.scheme in ("s3", "http", "https"):
        path = PurePosixPath(parts.path)
        new = str(path.with_name(f"{path.stem}_{kind}.json"))
        return urlunsplit((parts.scheme, parts.netloc, new, parts.query, parts.fragment))
    local = Path(text)
    return str(local.with_name(f"{local.stem}_{kind}.json"))


def dumps(obj: object) -> str:
    """The one JSON spelling of a package (stable bytes for identical inputs)."""
    return json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=True) + "\n"


def attr_json(obj: object) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))
