"""Sentinel-2 L2A scenes found by STAC, one per MGRS tile, stacked into raw scenes.

Search (pystac-client) runs against any STAC API: Earth Search v1 by default (assets keyed
blue/green/red/nir, tile in `grid:code`), or Planetary Computer (assets B02/B03/B04/B08,
tile in `s2:mgrs_tile`, hrefs signed with a SAS token from its token endpoint). Tiles are
matched with the API's `query` extension where the server conforms to it, else by a
footprint search (the tile's 100 km square, shrunk by 10 km so neighbours barely touch it);
either way each item's own tile property is checked here too. Per tile the least cloudy
item wins (then the one with least nodata, then the newest).

Acquisition downloads the four 10 m bands (blue, green, red, nir) with ranged, resumable,
size-checked requests (`ocog_lib.data.download`) and stacks them into one tiled,
compressed 4-band uint16 GeoTIFF with the same tags as the sample's raw scenes (so
`ocog_lib.data.sample` prepares either), plus the item's scale, offset and nodata as band
metadata and OCOG_* tags. The chosen scene per tile is kept in a JSON catalog, so
`raw_scenes[tile]` downloads exactly what discovery chose, without searching again.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ocog_lib.atomic import atomic_path, atomic_write_text
from ocog_lib.data.download import DownloadResult, download
from ocog_lib.data.mgrs import COLUMN_SETS, LATITUDE_BANDS, ROW_LETTERS, utm_epsg
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings
from ocog_lib.storage import HttpObject, RemoteOptions, open_source

BANDS = ("blue", "green", "red", "nir")
# asset keys per band, Earth Search's common names first, then Planetary Computer's
BAND_KEYS = {
    "blue": ("blue", "B02", "b02"),
    "green": ("green", "B03", "b03"),
    "red": ("red", "B04", "b04"),
    "nir": ("nir", "B08", "b08"),
}
DEFAULT_SCALE = 1e-4  # L2A DN -> reflectance when an item does not say
STRIP_ROWS = 512
PC_TOKEN_URL = "https://planetarycomputer.microsoft.com/api/sas/v1/token"
PC_KEY_ENV = "PC_SDK_SUBSCRIPTION_KEY"

# The OCOG toolkit's scenes: seven tiles around Lake Victoria's east, Oct-Dec 2024.
OCOG_TOOLKIT_TILES = ("36MZD", "37MBV", "36MZE", "37MBT", "37MBU", "36MZC", "37MCU")
OCOG_TOOLKIT_PERIOD = ("2024-10-01", "2024-12-31")

_TILE = re.compile(r"^(?:MGRS-|T)?(\d{1,2})([C-HJ-NP-X])([A-HJ-NP-Z])([A-HJ-NP-V])$")


# ------------------------------------------------------------------ APIs and tiles


@dataclass(frozen=True)
class StacApi:
    """A STAC API serving Sentinel-2 L2A, and how its items name tiles and sign hrefs."""

    name: str
    url: str
    collection: str = "sentinel-2-l2a"
    tile_property: str = "grid:code"  # queried with the query extension
    tile_prefix: str = "MGRS-"  # value = prefix + "36MZD"
    signing: str | None = None  # None or "planetary-computer"
    token_url: str = PC_TOKEN_URL


STAC_APIS = {
    "earth-search": StacApi("earth-search", "https://earth-search.aws.element84.com/v1"),
    "planetary-computer": StacApi(
        "planetary-computer",
        "https://planetarycomputer.microsoft.com/api/stac/v1",
        tile_property="s2:mgrs_tile",
        tile_prefix="",
        signing="planetary-computer",
    ),
}


def stac_api(name_or_url: str, **overrides: Any) -> StacApi:
    """A known API by name ('earth-search', 'planetary-computer') or any STAC API URL."""
    text = name_or_url.strip()
    if text in STAC_APIS:
        api = STAC_APIS[text]
    elif text.startswith(("http://", "https://")):
        api = StacApi(name=text, url=text.rstrip("/"))
    else:
        raise InputError(f"STAC API {text!r}",
                         f"unknown; use {', '.join(STAC_APIS)} or an http(s) URL")
    changes = {k: v for k, v in overrides.items() if v is not None}
    return StacApi(**{**asdict(api), **changes}) if changes else api


def normalize_tile(tile: str) -> str:
    """'T36MZD', 'MGRS-36MZD', '36mzd' -> '36MZD'; InputError for anything else."""
    m = _TILE.match(str(tile).strip().upper())
    if not m or not 1 <= int(m.group(1)) <= 60:
        raise InputError(f"tile {tile!r}", "not an MGRS tile id such as 36MZD")
    return f"{int(m.group(1)):02d}{m.group(2)}{m.group(3)}{m.group(4)}"


def tile_square(tile: str, inset_m: float = 0.0) -> tuple[int, list[tuple[float, float]]]:
    """(UTM EPSG, corners) of the tile's 100 km MGRS square, `inset_m` inside its edges."""
    from rasterio.warp import transform

    t = normalize_tile(tile)
    zone, band, col, row = int(t[:2]), t[2], t[3], t[4]
    columns = COLUMN_SETS[(zone - 1) % 3]
    if col not in columns:
        raise InputError(f"tile {tile!r}", f"column letter {col} does not occur in zone {zone}")
    column = columns.index(col) + 1
    row_cycle = (ROW_LETTERS.index(row) - (5 if zone % 2 == 0 else 0)) % 20
    lat_lo = -80.0 + 8.0 * LATITUDE_BANDS.index(band)
    lat_mid = lat_lo + (6.0 if band == "X" else 4.0)
    epsg = utm_epsg(zone, lat_mid)
    _, ys = transform("EPSG:4326", f"EPSG:{epsg}", [-183.0 + 6.0 * zone], [lat_mid])
    base = row_cycle * 100_000
    south = base + round((ys[0] - base - 50_000) / 2_000_000) * 2_000_000
    west = column * 100_000
    lo, hi = inset_m, 100_000 - inset_m
    corners = [(west + lo, south + lo), (west + hi, south + lo), (west + hi, south + hi),
               (west + lo, south + hi)]
    return epsg, corners


def tile_footprint(tile: str, inset_m: float = 10_000.0) -> dict:
    """GeoJSON polygon (lon/lat) of the tile's square, `inset_m` inside its edges."""
    from rasterio.warp import transform

    epsg, corners = tile_square(tile, inset_m)
    lons, lats = transform(f"EPSG:{epsg}", "EPSG:4326", [c[0] for c in corners],
                           [c[1] for c in corners])
    ring = [[lo, la] for lo, la in zip(lons, lats, strict=True)]
    return {"type": "Polygon", "coordinates": [ring + [ring[0]]]}


def tile_centre(tile: str) -> tuple[float, float]:
    """(lon, lat) of the centre of the tile's 100 km square."""
    from rasterio.warp import transform

    epsg, corners = tile_square(tile, 50_000.0)
    lons, lats = transform(f"EPSG:{epsg}", "EPSG:4326", [corners[0][0]], [corners[0][1]])
    return lons[0], lats[0]


def tile_of_item(item: dict) -> str | None:
    """The MGRS tile an item says it covers (grid:code, s2:mgrs_tile, mgrs:*, product URI)."""
    props = item.get("properties", {})
    for key in ("grid:code", "s2:mgrs_tile", "tile_id"):
        value = props.get(key)
        if isinstance(value, str):
            try:
                return normalize_tile(value)
            except InputError:
                pass
    parts = [props.get(k) for k in ("mgrs:utm_zone", "mgrs:latitude_band", "mgrs:grid_square")]
    if all(p is not None for p in parts):
        try:
            return normalize_tile(f"{int(parts[0]):02d}{parts[1]}{parts[2]}")
        except (InputError, ValueError):
            pass
    m = re.search(r"_T(\d{2}[A-Z]{3})_", str(props.get("s2:product_uri", "")))
    return normalize_tile(m.group(1)) if m else None


# ------------------------------------------------------------------ items and scenes


@dataclass(frozen=True)
class BandAsset:
    band: str  # blue, green, red, nir
    key: str  # the asset's key in the item
    href: str
    size: int | None  # file:size, when the item says
    scale: float | None
    offset: float | None
    nodata: float | None


def band_assets(item: dict) -> list[BandAsset]:
    """The item's blue, green, red and nir assets; InputError naming any that are missing."""
    assets = item.get("assets") or {}
    found, missing = [], []
    for band in BANDS:
        key = next((k for k in BAND_KEYS[band] if k in assets and assets[k].get("href")), None)
        if key is None:
            missing.append(f"{band} ({'/'.join(BAND_KEYS[band][:2])})")
            continue
        asset = assets[key]
        raster = (asset.get("raster:bands") or [{}])[0]
        size = asset.get("file:size")
        found.append(BandAsset(band, key, asset["href"],
                               int(size) if isinstance(size, int | float) else None,
                               raster.get("scale"), raster.get("offset"), raster.get("nodata")))
    if missing:
        raise InputError(f"item {item.get('id')}",
                         f"no asset for band {', '.join(missing)}; it has {sorted(assets)}")
    return found


@dataclass(frozen=True)
class Scene:
    """One STAC item chosen for a tile, with the API it came from (for signing)."""

    tile: str
    api: StacApi
    item: dict

    @property
    def id(self) -> str:
        return str(self.item["id"])

    @property
    def datetime(self) -> str:
        return str(self.item.get("properties", {}).get("datetime", ""))

    @property
    def cloud_cover(self) -> float | None:
        value = self.item.get("properties", {}).get("eo:cloud_cover")
        return float(value) if isinstance(value, int | float) else None

    @property
    def bands(self) -> list[BandAsset]:
        return band_assets(self.item)

    def to_json(self) -> dict:
        return {"tile": self.tile, "api": asdict(self.api), "item": self.item}

    @classmethod
    def from_json(cls, data: dict) -> Scene:
        return cls(tile=data["tile"], api=StacApi(**data["api"]), item=data["item"])


def _rank(item: dict, prefer: str = "least_cloudy") -> tuple:
    """least_cloudy: least cloud, then least nodata, then newest; newest: newest first,
    then least cloud. The id breaks ties, so the choice is deterministic."""
    props = item.get("properties", {})
    cloud = props.get("eo:cloud_cover")
    nodata = props.get("s2:nodata_pixel_percentage")
    cloud_key = float(cloud) if isinstance(cloud, int | float) else math.inf
    nodata_key = float(nodata) if isinstance(nodata, int | float) else math.inf
    newest_key = -_timestamp(props.get("datetime"))
    if prefer == "newest":
        return (newest_key, cloud_key, nodata_key, str(item.get("id")))
    return (cloud_key, nodata_key, newest_key, str(item.get("id")))


def _timestamp(text: object) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


@dataclass(frozen=True)
class SceneQuery:
    """Which scenes: MGRS tiles within a date range and cloud limit, or explicit item ids."""

    tiles: tuple[str, ...] = ()
    start: str | None = None  # ISO date or datetime, inclusive
    end: str | None = None
    max_cloud_cover: float | None = 20.0
    scene_ids: tuple[str, ...] = ()
    prefer: str = "least_cloudy"  # or "newest" (the latest scene under the cloud limit)
    max_items_per_tile: int = 500

    def __post_init__(self) -> None:
        object.__setattr__(self, "tiles", tuple(normalize_tile(t) for t in self.tiles))
        object.__setattr__(self, "scene_ids", tuple(str(s) for s in self.scene_ids))
        if not self.tiles and not self.scene_ids:
            raise InputError("scene query", "give MGRS tiles or scene ids")
        if self.prefer not in ("least_cloudy", "newest"):
            raise InputError(f"prefer={self.prefer!r}", "must be least_cloudy or newest")
        if self.max_cloud_cover is not None and not 0 <= self.max_cloud_cover <= 100:
            raise InputError(f"max_cloud_cover={self.max_cloud_cover}", "must be in 0..100")

    @property
    def datetime(self) -> str | None:
        if not self.start and not self.end:
            return None
        return f"{self.start or '..'}/{self.end or '..'}"


def ocog_toolkit_query(max_cloud_cover: float | None = 20.0) -> SceneQuery:
    """The OCOG toolkit's tiles and period (its paper's Sentinel-2 workload)."""
    return SceneQuery(tiles=OCOG_TOOLKIT_TILES, start=OCOG_TOOLKIT_PERIOD[0],
                      end=OCOG_TOOLKIT_PERIOD[1], max_cloud_cover=max_cloud_cover)


@dataclass(frozen=True)
class Skipped:
    item_id: str
    tile: str
    reason: str


@dataclass
class Discovery:
    """What a search found: the chosen scene per tile, and why other items were left out."""

    scenes: dict[str, Scene] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    unmatched_tiles: list[str] = field(default_factory=list)  # no usable scene found
    items_seen: int = 0
    used_query_extension: bool = False


# ------------------------------------------------------------------ search


def _open_client(api: StacApi, timeout_s: float, retries: int):
    from pystac_client import Client
    from pystac_client.stac_api_io import StacApiIO
    from urllib3 import Retry

    retry = Retry(total=retries, backoff_factor=0.2, status_forcelist=(429, 500, 502, 503, 504),
                  allowed_methods=None, raise_on_status=False)
    io = StacApiIO(max_retries=retry, timeout=timeout_s)
    return Client.open(api.url, stac_io=io, timeout=timeout_s)


def _stac_error(api: StacApi, what: str, exc: Exception, retries: int) -> InputError:
    status = getattr(exc, "status_code", None)
    detail = " ".join(str(exc).split())[:300]
    cause = f"HTTP {status}: {detail}" if status else f"{type(exc).__name__}: {detail}"
    return InputError(f"STAC API {api.url}",
                      f"{what} failed after {retries} retries ({cause})")


def discover_scenes(api: StacApi, query: SceneQuery, *, timeout_s: float = 60.0,
                    retries: int = 4) -> Discovery:
    """The best usable scene per tile (or the scenes named by id) from a STAC search."""
    search, use_query = _stac_search(api, timeout_s, retries)
    out = Discovery(used_query_extension=bool(use_query))
    candidates: dict[str, list[dict]] = {}
    if query.scene_ids:
        _add_named_items(search, api, query, out, candidates)
    for tile in query.tiles:
        items = search(**_tile_search_kw(api, query, tile, use_query))
        out.items_seen += len(items)
        for item in items:
            if _item_fits_tile(item, tile, query):
                candidates.setdefault(tile, []).append(item)
    _choose_scenes(api, query, candidates, out)
    wanted = list(query.tiles)
    out.unmatched_tiles = [t for t in wanted if t not in out.scenes]
    return out


@dataclass
class Series:
    """Every usable scene of one tile in a query's period, oldest first: a time stack."""

    tile: str
    scenes: list[Scene] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    items_seen: int = 0


def discover_series(api: StacApi, query: SceneQuery, *, timeout_s: float = 60.0,
                    retries: int = 4) -> Series:
    """All of the first tile's items within the period and cloud limit (not one per tile,
    as `discover_scenes` chooses): the scenes a temporal reducer runs over."""
    if not query.tiles:
        raise InputError("scene query", "a time series needs an MGRS tile")
    tile = query.tiles[0]
    search, use_query = _stac_search(api, timeout_s, retries)
    items = search(**_tile_search_kw(api, query, tile, use_query))
    out = Series(tile, items_seen=len(items))
    seen: set[str] = set()
    for item in sorted(items, key=lambda i: (_timestamp(i.get("properties", {})
                                                        .get("datetime")), str(i.get("id")))):
        item_id = str(item.get("id"))
        if item_id in seen or not _item_fits_tile(item, tile, query):
            continue
        seen.add(item_id)
        if _has_bands(item, tile, out.skipped):
            out.scenes.append(Scene(tile, api, item))
    return out


def _stac_search(api: StacApi, timeout_s: float,
                 retries: int) -> tuple[Callable[..., list[dict]], Any]:
    """A search over `api.collection` that fails as InputError, and whether it has `query`."""
    import requests
    from pystac_client import ConformanceClasses
    from pystac_client.exceptions import APIError

    try:
        client = _open_client(api, timeout_s, retries)
        use_query = client.conforms_to(ConformanceClasses.QUERY)
    except (APIError, requests.RequestException, OSError) as exc:
        raise _stac_error(api, "opening the API", exc, retries) from exc

    def search(**kw: Any) -> list[dict]:
        try:
            return list(client.search(collections=[api.collection], limit=100,
                                      **kw).items_as_dicts())
        except (APIError, requests.RequestException, OSError) as exc:
            raise _stac_error(api, f"searching {api.collection}", exc, retries) from exc

    return search, use_query


def _add_named_items(search: Callable[..., list[dict]], api: StacApi, query: SceneQuery,
                     out: Discovery, candidates: dict[str, list[dict]]) -> None:
    """The items named by id become candidates of their tile; missing ones are skipped."""
    items = search(ids=list(query.scene_ids), max_items=len(query.scene_ids))
    out.items_seen += len(items)
    got = {str(i.get("id")) for i in items}
    out.skipped += [Skipped(s, "", f"not found in {api.collection} at {api.url}")
                    for s in query.scene_ids if s not in got]
    for item in items:
        tile = tile_of_item(item)
        if tile is None:
            out.skipped.append(Skipped(str(item.get("id")), "", "item names no MGRS tile"))
            continue
        candidates.setdefault(tile, []).append(item)


def _tile_search_kw(api: StacApi, query: SceneQuery, tile: str, use_query: Any) -> dict[str, Any]:
    """Search arguments for one tile: the `query` extension if served, else its footprint."""
    kw: dict[str, Any] = {"datetime": query.datetime, "max_items": query.max_items_per_tile}
    if use_query:
        q: dict[str, Any] = {api.tile_property: {"eq": f"{api.tile_prefix}{tile}"}}
        if query.max_cloud_cover is not None:
            q["eo:cloud_cover"] = {"lte": query.max_cloud_cover}
        kw["query"] = q
    else:
        kw["intersects"] = tile_footprint(tile)
    return kw


def _item_fits_tile(item: dict, tile: str, query: SceneQuery) -> bool:
    if tile_of_item(item) != tile:
        return False  # a neighbour overlapping the footprint
    cloud = item.get("properties", {}).get("eo:cloud_cover")
    limit = query.max_cloud_cover
    return not (limit is not None and isinstance(cloud, int | float) and cloud > limit)


def _has_bands(item: dict, tile: str, skipped: list[Skipped]) -> bool:
    """Whether the item has the four bands; if not, it is skipped saying which it lacks."""
    try:
        band_assets(item)
    except InputError as exc:
        skipped.append(Skipped(str(item.get("id")), tile, exc.cause))
        return False
    return True


def _choose_scenes(api: StacApi, query: SceneQuery, candidates: dict[str, list[dict]],
                   out: Discovery) -> None:
    """Per tile the best-ranked item with usable bands; each item counts once."""
    seen_ids: set[str] = set()
    for tile in sorted(candidates):
        for item in sorted(candidates[tile], key=lambda i: _rank(i, query.prefer)):
            item_id = str(item.get("id"))
            if item_id in seen_ids:
                continue
            seen_ids.add(item_id)
            if not _has_bands(item, tile, out.skipped):
                continue
            if tile in out.scenes:
                if query.scene_ids and item_id in query.scene_ids:
                    out.skipped.append(Skipped(
                        item_id, tile, f"{out.scenes[tile].id} was chosen for this tile "
                                       f"(one scene per tile, {query.prefer.replace('_', ' ')})"))
                continue
            out.scenes[tile] = Scene(tile, api, item)


# ------------------------------------------------------------------ catalog


def catalog_path(settings: Settings) -> Path:
    """The scene catalog: which scene each Sentinel-2 tile's raw scene is made from."""
    return settings.raw_dir("sentinel-2") / "catalog.json"


def downloads_dir(settings: Settings) -> Path:
    """Band downloads (and their part files) until they are stacked."""
    return settings.raw_dir("sentinel-2") / "downloads"


def scene_for_tile(settings: Settings, tile: str) -> Scene:
    """The catalog's scene for `tile`, or an error saying how to get one."""
    tile = normalize_tile(tile)
    path = catalog_path(settings)
    scenes = load_catalog(path)
    if tile not in scenes:
        known = ", ".join(sorted(scenes)) or "none"
        raise InputError(f"sensor tile {tile}",
                         f"no Sentinel-2 scene chosen for it in {path} (tiles there: {known}); "
                         f"run discovery first: materialize sentinel2_scenes with this tile, "
                         f"or `ocog data s2 search --tiles {tile}`")
    return scenes[tile]


def load_catalog(path: Path) -> dict[str, Scene]:
    """Tile -> chosen scene, from the JSON catalog written by `save_catalog` ({} if none)."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        return {t: Scene.from_json(s) for t, s in data["tiles"].items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(path, f"not a scene catalog ({exc})") from exc


def save_catalog(path: Path, scenes: dict[str, Scene]) -> None:
    data = {"tiles": {t: scenes[t].to_json() for t in sorted(scenes)}}
    atomic_write_text(Path(path), json.dumps(data, indent=1) + "\n")


def merge_catalog(path: Path, found: dict[str, Scene]) -> tuple[list[str], list[str]]:
    """Add/replace the found scenes in the catalog; returns (new tiles, tiles whose scene
    changed). Tiles the search did not cover keep their scene."""
    scenes = load_catalog(path)
    new = sorted(t for t in found if t not in scenes)
    changed = sorted(t for t in found if t in scenes and scenes[t].id != found[t].id)
    scenes.update(found)
    save_catalog(path, scenes)
    return new, changed


# ------------------------------------------------------------------ signing


class PlanetaryComputerSigner:
    """SAS tokens from Planetary Computer's token endpoint (`<token_url>/<collection>`),
    one per collection, reused until five minutes before they expire. A subscription key
    ($PC_SDK_SUBSCRIPTION_KEY) raises the rate limit; anonymous access works too."""

    def __init__(self, token_url: str = PC_TOKEN_URL, subscription_key: str | None = None,
                 timeout_s: float = 30.0, retries: int = 4):
        import os

        self.token_url = token_url.rstrip("/")
        self.subscription_key = subscription_key or os.environ.get(PC_KEY_ENV) or None
        self.timeout_s = timeout_s
        self.retries = retries
        self._cache: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def token(self, collection: str) -> str:
        with self._lock:
            cached = self._cache.get(collection)
            if cached and cached[1] - 300 > time.time():
                return cached[0]
        token, expiry = self._fetch(collection)
        with self._lock:
            self._cache[collection] = (token, expiry)
        return token

    def _fetch(self, collection: str) -> tuple[str, float]:
        import requests
        from requests.adapters import HTTPAdapter
        from urllib3 import Retry

        url = f"{self.token_url}/{collection}"
        headers = {"Ocp-Apim-Subscription-Key": self.subscription_key} \
            if self.subscription_key else {}
        session = requests.Session()
        session.mount(url, HTTPAdapter(max_retries=Retry(
            total=self.retries, backoff_factor=0.2, status_forcelist=(429, 500, 502, 503, 504))))
        try:
            resp = session.get(url, headers=headers, timeout=self.timeout_s)
            resp.raise_for_status()
            data = resp.json()
            token = str(data["token"])
        except (requests.RequestException, ValueError, KeyError) as exc:
            raise InputError(url, f"no SAS token from the token endpoint ({exc})") from exc
        finally:
            session.close()
        return token, _expiry(data.get("msft:expiry"))


def _expiry(text: object) -> float:
    stamp = _timestamp(text)
    return stamp if stamp > 0 else time.time() + 600  # unknown expiry: reuse for 10 minutes


def signer_for(api: StacApi) -> PlanetaryComputerSigner | None:
    return PlanetaryComputerSigner(api.token_url) if api.signing == "planetary-computer" else None


# ------------------------------------------------------------------ acquisition


@dataclass(frozen=True)
class AcquiredScene:
    path: Path
    tile: str
    item_id: str
    downloads: list[DownloadResult]
    reused: bool  # the raw scene already held this item: nothing fetched
    seconds: float

    @property
    def bytes_fetched(self) -> int:
        return sum(d.fetched for d in self.downloads)


def scene_tags(path: Path) -> dict[str, str]:
    import rasterio

    with rasterio.open(path) as ds:
        return ds.tags()


def acquire_scene(
    scene: Scene,
    dst: Path,
    work_dir: Path,
    *,
    signer: PlanetaryComputerSigner | None = None,
    options: RemoteOptions | None = None,
    connections: int = 4,
    keep_bands: bool = False,
    progress: Callable[[str], None] | None = None,
) -> AcquiredScene:
    """Download the scene's four bands under `work_dir/<item id>/` and stack them at `dst`.

    A `dst` already stacked from this item is kept as it is. Band downloads resume where an
    earlier attempt stopped; they are deleted after stacking unless `keep_bands`.
    """
    started = time.monotonic()
    dst = Path(dst)
    if dst.is_file():
        try:
            if scene_tags(dst).get("OCOG_STAC_ITEM") == scene.id:
                return AcquiredScene(dst, scene.tile, scene.id, [], True,
                                     time.monotonic() - started)
        except Exception:  # noqa: BLE001 - an unreadable old file is simply replaced
            pass
    if signer is None:
        signer = signer_for(scene.api)
    bands = scene.bands
    folder = Path(work_dir) / _safe(scene.id)
    results: list[DownloadResult] = []
    for band in bands:
        if progress:
            progress(f"{scene.tile} {scene.id}: downloading {band.band} ({band.key})")
        results.append(_download_band(band, folder / f"{band.band}.tif", scene.api, signer,
                                      options, connections))
    if progress:
        progress(f"{scene.tile} {scene.id}: stacking {len(bands)} bands into {dst}")
    stack_bands([r.path for r in results], dst, scene, bands)
    if not keep_bands:
        for r in results:
            r.path.unlink(missing_ok=True)
        try:
            folder.rmdir()
        except OSError:
            pass
    return AcquiredScene(dst, scene.tile, scene.id, results, False, time.monotonic() - started)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def _download_band(band: BandAsset, dst: Path, api: StacApi,
                   signer: PlanetaryComputerSigner | None, options: RemoteOptions | None,
                   connections: int) -> DownloadResult:
    href = band.href
    if href.startswith(("http://", "https://")):
        token = signer.token(api.collection) if signer is not None else None
        source = HttpObject(href, sas_token=token, options=options)
    else:
        source = open_source(href, **({"options": options} if options else {}))
    return download(source, dst, expected_size=band.size, connections=connections)


def stack_bands(paths: Iterable[Path], dst: Path, scene: Scene,
                bands: list[BandAsset] | None = None) -> Path:
    """One tiled, compressed 4-band uint16 GeoTIFF from single-band files on one grid."""
    import rasterio

    from ocog_lib.data.sample import GDAL_CACHE_BYTES, TIFF_PROFILE

    paths = [Path(p) for p in paths]
    bands = bands or scene.bands
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
        sources = []
        try:
            _open_bands(paths, sources)
            first = sources[0]
            _check_band_grids(sources, paths)
            nodata = next((b.nodata for b in bands if b.nodata is not None), 0)
            scale = next((b.scale for b in bands if b.scale is not None), DEFAULT_SCALE)
            offset = next((b.offset for b in bands if b.offset is not None), 0.0)
            profile = dict(TIFF_PROFILE, count=4, width=first.width, height=first.height,
                           dtype="uint16", crs=first.crs, transform=first.transform,
                           nodata=nodata)
            tags = _stack_tags(scene, bands, nodata, scale, offset)
            _write_stack(dst, sources, profile, tags, scale, offset)
        finally:
            for s in sources:
                s.close()
    return Path(dst)


def _open_bands(paths: list[Path], sources: list) -> None:
    """Open each band into `sources` (the caller closes them, also after a failure)."""
    import rasterio

    for p in paths:
        try:
            sources.append(rasterio.open(p))
        except rasterio.errors.RasterioError as exc:
            raise InputError(p, f"downloaded band is not a readable raster ({exc})") \
                from exc


def _check_band_grids(sources: list, paths: list[Path]) -> None:
    """Every band single uint16 on the first band's grid."""
    first = sources[0]
    for s, p in zip(sources, paths, strict=True):
        if (s.width, s.height, s.crs, s.transform) != (first.width, first.height,
                                                       first.crs, first.transform):
            raise InputError(p, f"{s.width}x{s.height} {s.crs} differs from the "
                                f"first band's grid ({first.width}x{first.height} "
                                f"{first.crs}); expected four 10 m bands")
        if s.count != 1 or s.dtypes[0] != "uint16":
            raise InputError(p, f"expected 1 uint16 band, found {s.count} {s.dtypes[0]}")


def _stack_tags(scene: Scene, bands: list[BandAsset], nodata: Any, scale: float,
                offset: float) -> dict[str, str]:
    """The OCOG_* tags of a stacked scene (as the sample's raw scenes have)."""
    props = scene.item.get("properties", {})
    return dict(
        OCOG_SENSOR="sentinel-2",
        OCOG_SENSOR_SHORT="s2",
        OCOG_TILE_ID=scene.tile,
        OCOG_REFLECTANCE_SCALE=repr(float(scale)),
        OCOG_REFLECTANCE_OFFSET=repr(float(offset)),
        OCOG_NODATA=repr(nodata),
        OCOG_STAC_ITEM=scene.id,
        OCOG_STAC_API=scene.api.url,
        OCOG_STAC_COLLECTION=scene.api.collection,
        OCOG_DATETIME=scene.datetime,
        OCOG_CLOUD_COVER=repr(scene.cloud_cover),
        OCOG_BOA_OFFSET_APPLIED=str(props.get("earthsearch:boa_offset_applied", "")),
        OCOG_SOURCE=f"STAC {scene.api.url} {scene.api.collection}/{scene.id} "
                    + ",".join(b.key for b in bands),
    )


def _write_stack(dst: Path, sources: list, profile: dict, tags: dict[str, str], scale: float,
                 offset: float) -> None:
    """The bands in strips of STRIP_ROWS into `dst`, which appears only when complete."""
    import rasterio
    from rasterio.windows import Window

    from ocog_lib.data.sample import BAND_NAMES

    first = sources[0]
    with atomic_path(dst) as tmp:
        with rasterio.open(tmp, "w", **profile) as out:
            for y0 in range(0, first.height, STRIP_ROWS):
                win = Window(0, y0, first.width, min(STRIP_ROWS, first.height - y0))
                out.write(np.stack([s.read(1, window=win) for s in sources]), window=win)
            for i, name in enumerate(BAND_NAMES, start=1):
                out.set_band_description(i, name)
            out.scales = [float(scale)] * 4
            out.offsets = [float(offset)] * 4
            out.update_tags(**tags)
