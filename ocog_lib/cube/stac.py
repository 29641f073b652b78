"""A time stack from STAC: every Sentinel-2 L2A item of one MGRS tile in a period becomes a
scene of a `stack.json` whose assets are the items' own COG hrefs, so the cube reads them
by range requests where they are (nothing is downloaded).

Bands are named as the sample's stack (B02, B03, B04, B08; aliases blue/green/red/nir); the
scene classification (`scl` on Earth Search, `SCL` on Planetary Computer) becomes the SCL
mask when every item has it. Each item's raster:bands scale and offset go into the scene's
`scaling`, so expressions see reflectance (L2A baseline 04.00 adds a -0.1 offset to DN).
APIs whose hrefs need signing are refused: a signed href in stack.json would store a token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ocog_lib.atomic import atomic_write_text
from ocog_lib.cube.stack import SceneStack, from_document
from ocog_lib.data.sentinel2 import (
    Scene,
    SceneQuery,
    Skipped,
    StacApi,
    band_assets,
    discover_series,
)
from ocog_lib.errors import InputError

BAND_NAMES = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08"}
SCL_KEYS = ("scl", "SCL")


@dataclass(frozen=True)
class StacStack:
    path: Path  # the stack.json written
    stack: SceneStack
    skipped: tuple[Skipped, ...]
    items_seen: int
    masked: bool  # every item had a scene classification


def stack_document(name: str, scenes: list[Scene]) -> dict:
    """stack.json's content for `scenes` (oldest first), hrefs as the items give them."""
    if not scenes:
        raise InputError(f"stack {name!r}", "no scenes to stack")
    masked = all(_scl_href(s.item) for s in scenes)
    rows = []
    for scene in scenes:
        assets, scaling = {}, {}
        for band in band_assets(scene.item):
            assets[BAND_NAMES[band.band]] = band.href
            if band.scale is not None or band.offset is not None:
                scaling[BAND_NAMES[band.band]] = [band.scale if band.scale is not None else 1.0,
                                                  band.offset or 0.0]
        if masked:
            assets["SCL"] = _scl_href(scene.item)
        rows.append({"id": scene.id, "datetime": scene.datetime,
                     "cloud_cover": scene.cloud_cover, "assets": assets,
                     **({"scaling": scaling} if scaling else {})})
    return {"name": name, "bands": list(BAND_NAMES.values()),
            "aliases": {alias: band for alias, band in BAND_NAMES.items()},
            "mask": {"kind": "scl", "asset": "SCL"} if masked else None, "scenes": rows}


def _scl_href(item: dict) -> str | None:
    assets = item.get("assets") or {}
    return next((assets[k]["href"] for k in SCL_KEYS if assets.get(k, {}).get("href")), None)


def build_stac_stack(api: StacApi, query: SceneQuery, out_dir: Path, *,
                     name: str | None = None, timeout_s: float = 60.0) -> StacStack:
    """Search `api` for the query's first tile over its period; write out_dir/stack.json
    (atomically; checked by loading it back)."""
    if api.signing:
        raise InputError(f"STAC API {api.name}", f"its hrefs need signing ({api.signing}); a "
                         "stack stores hrefs, and a signed one would store the token: use "
                         "an API with public hrefs such as earth-search")  # fmt: skip
    series = discover_series(api, query, timeout_s=timeout_s)
    if not series.scenes:
        why = "; ".join(f"{s.item_id}: {s.reason}" for s in series.skipped[:5])
        raise InputError(f"tile {series.tile} {query.datetime or 'any date'}",
                         f"no usable scene in {api.collection} at {api.url} "
                         f"({series.items_seen} items seen{'; ' + why if why else ''})")
    label = name or f"s2-{series.tile}-{query.start or 'start'}-{query.end or 'end'}"
    doc = stack_document(label, series.scenes)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "stack.json"
    stack = from_document(doc, root=str(out_dir.resolve()), where=str(path))
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
    return StacStack(path, stack, tuple(series.skipped), series.items_seen,
                     doc["mask"] is not None)
