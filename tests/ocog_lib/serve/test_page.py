"""The map page of `ocog serve` (ocog_lib/serve/page.py): its routes over HTTP, the view's
stretch against the cube's `read_bbox` and numpy on the same box, and the page itself in
headless Chromium over the sample's time stack (the one `ocog serve` builds: 12 dates,
512 px), from a real server this module starts and stops by PID.

Chromium (Debian `chromium` + `chromium-driver`; `make browser` installs them) is skipped
when absent, except under CI (the environment variable CI set), where its absence fails.
`OCOG_MAP_SCREENSHOT=path` keeps a copy of the page's screenshot there.
"""

from __future__ import annotations

import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import requests

from ocog_lib.cli.serve import SAMPLE_STACK
from ocog_lib.cube.reducers import REDUCERS
from ocog_lib.serve.colormaps import COLORMAPS
from ocog_lib.serve.config import DEFAULT_EXPRESSION, ServeConfig
from ocog_lib.serve.page import STRETCH_DIGITS, STRETCH_PERCENTILES
from tests.support.chromium import headless_chromium
from tests.support.serving import Server, running_server

pytestmark = pytest.mark.slow

NDWI = "(green-nir)/(green+nir)"
MAP_BACKGROUND = (0xE9, 0xED, 0xF1)  # #map's background in app.css
WAIT_S = 90  # the browser's waits: bounded, a limit not a speed target


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Server:
    """`ocog serve` over the sample's time stack, built where `ocog serve` builds it."""
    from ocog_lib.data.timestack import build_time_stack

    root = tmp_path_factory.mktemp("page")
    stack = build_time_stack(root / "data" / "timestack" / SAMPLE_STACK)
    with running_server(root, stack) as srv:
        _embed_the_stacks_area(srv)
        yield srv


def _embed_the_stacks_area(server: Server) -> None:
    """16 x 16 stored patches (random unit vectors, real H3 cells) over the stack's bounds,
    in the results file the server reads, for the page's "places like this" layer."""
    from ocog_lib.embed import store
    from tests.support.embedsets import grid_set

    w, s, e, n = _info(server)["bounds"]
    step = min(e - w, n - s) / 16
    patches = grid_set(16, 16, lon0=w + step / 2, lat0=s + step / 2, res=9, step=step)
    store.write_embeddings(server.data_dir / "ocog.duckdb", "sample", "m", patches)


def _get(server: Server, path: str, **params) -> requests.Response:
    return requests.get(f"{server.url}{path}", params=params, timeout=60)


def _info(server: Server) -> dict:
    reply = _get(server, "/info")
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_the_page_loads_only_from_this_server(sample: Server):
    page = _get(sample, "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    links = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert "static/vendor/leaflet/leaflet.js" in links and "static/app.js" in links
    for link in links:
        assert not re.match(r"^(https?:)?//", link), link  # no CDN
        if not link.startswith("data:"):
            assert _get(sample, f"/{link}").status_code == 200, link
    for name in ("app.js", "app.css", "vendor/leaflet/leaflet.css"):
        text = _get(sample, f"/static/{name}").text
        loads = re.findall(r"""(?:fetch\(|url\(|import\s)\s*["'`]?(https?:)?//""", text)
        assert not loads, (name, loads)
    licence = _get(sample, "/static/vendor/leaflet/LICENSE")
    assert licence.status_code == 200 and "BSD 2-Clause" in licence.text


def test_a_missing_static_file_is_a_json_404(sample: Server):
    reply = _get(sample, "/static/no-such.js")
    assert reply.status_code == 404
    assert set(reply.json()) == {"error", "input", "cause"}


def test_info_describes_the_stack(sample: Server):
    import rasterio
    from rasterio.warp import transform_bounds

    from ocog_lib.cube.stack import SceneStack
    from ocog_lib.cube.zooms import finest_zoom

    info = _info(sample)
    stack = SceneStack.load(sample.stack)
    with rasterio.open(stack.uri(stack.scenes[0], stack.bands[0])) as ds:
        expected = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21)
    np.testing.assert_allclose(info["bounds"], expected, rtol=0, atol=1e-9)
    assert info["reducers"] == list(REDUCERS)
    assert list(info["colormaps"]) == list(COLORMAPS)
    assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for cs in info["colormaps"].values() for c in cs)
    assert [s["id"] for s in info["scenes"]] == [s.id for s in stack.scenes]
    assert len(info["scenes"]) == 12
    finest = finest_zoom(stack, "WebMercatorQuad")
    assert info["finest_zoom"] == finest
    assert info["maxzoom"] == finest + ServeConfig().max_overzoom
    assert 0 <= info["minzoom"] < finest
    assert info["default_expression"] == DEFAULT_EXPRESSION


def _half_cloudy(info: dict) -> str:
    """The day of the scene whose cloud cover is nearest 50 %."""
    return min(info["scenes"], key=lambda s: abs(s["cloud_cover"] - 50))["datetime"][:10]


@pytest.mark.parametrize("case", ["median NDVI", "first of a half-cloudy scene"])
def test_the_stretch_is_numpys_nan_percentiles_of_the_view(sample: Server, case: str):
    """The 2nd and 98th percentiles are np.nanpercentile's over read_bbox's pixels for the
    box and resolution the server says it read; NaN (cloud, no data) is left out."""
    from ocog_lib.cube.reads import read_bbox
    from ocog_lib.cube.stack import SceneStack

    west, south, east, north = _info(sample)["bounds"]
    params = {"expression": DEFAULT_EXPRESSION, "reducer": "median"}
    if case.startswith("first"):
        day = _half_cloudy(_info(sample))
        params = {"expression": NDWI, "reducer": "first", "start": day, "end": day}
    bbox = f"{west - 0.01},{south + 0.005},{east - 0.015},{north + 0.02}"  # part of the stack
    reply = _get(sample, "/stretch", bbox=bbox, **params)
    assert reply.status_code == 200, reply.text
    got = reply.json()
    cube = read_bbox(SceneStack.load(sample.stack), tuple(got["bbox"]), crs=got["crs"],
                     resolution=got["resolution"], expression=params["expression"],
                     reducer=params["reducer"], start=params.get("start"),
                     end=params.get("end"))  # fmt: skip
    assert cube.data.shape == (got["height"], got["width"])
    assert list(cube.scenes) == got["scenes"]
    expected = np.nanpercentile(cube.data.astype(np.float64), STRETCH_PERCENTILES)
    assert got["values"] == [float(v) for v in expected]
    assert got["rescale"] == [float(f"{v:.{STRETCH_DIGITS}g}") for v in expected]
    assert got["pixels"] == int(np.isfinite(cube.data).sum())
    if case.startswith("first"):  # masked cloud is NaN in the box, and left out
        assert 0 < got["pixels"] < 0.8 * cube.data.size


@pytest.mark.parametrize(("expression", "bbox", "why"), [
    (DEFAULT_EXPRESSION, "10,10,11,11", "does not overlap"),
    ("sqrt(-nir)", None, "no valid value"),  # NaN everywhere
    ("1/(nir-nir)", None, "no valid value"),  # infinite everywhere
])  # fmt: skip
def test_a_view_without_values_has_no_stretch(sample: Server, expression, bbox, why):
    bbox = bbox or ",".join(str(v) for v in _info(sample)["bounds"])
    reply = _get(sample, "/stretch", bbox=bbox, expression=expression)
    assert reply.status_code == 200, reply.text
    got = reply.json()
    assert got["rescale"] is None and got["values"] is None and got["pixels"] == 0
    assert why in got["why"]


@pytest.mark.parametrize(("params", "status", "error"), [
    ({"expression": "nir+swir"}, 422, "invalid expression"),
    ({"reducer": "mediam"}, 422, "unknown reducer"),
    ({"start": "2031-01-01"}, 404, "no scenes"),
    ({"bbox": "1,2,3"}, 400, "bad bbox"),
    ({"bbox": "3,2,1,4"}, 422, "bad bbox"),
])  # fmt: skip
def test_stretch_refusals_name_the_input(sample: Server, params, status, error):
    reply = _get(sample, "/stretch", **({"bbox": "-76,37,-75,38"} | params))
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body) == {"error", "input", "cause"} and body["error"] == error


# --- the page in headless Chromium ------------------------------------------------------

TILES_JS = """
return Array.from(document.querySelectorAll('#map img.leaflet-tile')).map(img => {
  const q = new URL(img.src).searchParams;
  return [img.src, q.get('expression'), q.get('rescale'), img.complete, img.naturalWidth];
});"""


@pytest.fixture
def chromium():
    with headless_chromium("1024,768", "the map page's browser test") as driver:
        yield driver


def _wait(driver, until, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S, poll_frequency=0.2).until(
        lambda d: until(d) or False, message=f"waiting {WAIT_S} s for {what}")


def _tiles_loaded(driver, expression: str) -> list:
    """Every tile <img> of the view drawn for `expression`, complete and decoded."""

    def ready(d):
        tiles = d.execute_script(TILES_JS)
        ok = tiles and all(e == expression and done and w > 0 for _, e, _, done, w in tiles)
        return tiles if ok and d.execute_script("return document.body.dataset.tiles") == \
            "loaded" else None  # fmt: skip

    return _wait(driver, ready, f"the tiles of {expression}")


def _map_pixels(driver, keep: Path) -> np.ndarray:
    """The screenshot (kept at `keep`), cropped to the map, as (h, w, 3) uint8."""
    from PIL import Image

    png = driver.get_screenshot_as_png()
    keep.write_bytes(png)
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    scale = image.shape[1] / driver.execute_script("return window.innerWidth")
    r = driver.execute_script("const r = document.getElementById('map')"
                              ".getBoundingClientRect(); return [r.left, r.top, r.width, "
                              "r.height];")  # fmt: skip
    x0, y0, w, h = (int(round(v * scale)) for v in r)
    return image[y0:y0 + h, x0:x0 + w]


def _not_blank(pixels: np.ndarray) -> tuple[float, int]:
    """The share of the map that is not its plain background, and its distinct colours."""
    off = np.abs(pixels.astype(int) - MAP_BACKGROUND).max(axis=2) > 12
    return float(off.mean()), len(np.unique(pixels.reshape(-1, 3), axis=0))


def _the_same_click_drew_the_similar_cells(driver, server: Server, lon: str, lat: str):
    """The "places like this" layer: the query's hexagon and the k cells /similar.geojson
    names for the clicked point, listed best first."""
    from selenium.webdriver.common.by import By

    _wait(driver, lambda d: d.execute_script("return document.body.dataset.similar")
          in ("loaded", "error"), "the similar cells")  # fmt: skip
    geo = _get(server, "/similar.geojson", lon=lon, lat=lat, k=10)
    assert geo.status_code == 200, geo.text
    matches = [f["id"] for f in geo.json()["features"] if f["properties"]["role"] == "match"]
    listed = [li.get_attribute("data-cell")
              for li in driver.find_elements(By.CSS_SELECTOR, "#similar-list li")]  # fmt: skip
    assert listed == matches and len(matches) == 10
    assert len(driver.find_elements(By.CSS_SELECTOR, "path.similar-cell")) == 10
    assert len(driver.find_elements(By.CSS_SELECTOR, "path.similar-query")) == 1


def test_the_map_page_in_chromium(sample: Server, chromium, tmp_path: Path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    driver = chromium
    driver.get(f"{sample.url}/")
    ndvi = _tiles_loaded(driver, DEFAULT_EXPRESSION)
    stretches = {rescale for _, _, rescale, _, _ in ndvi}
    assert len(stretches) == 1  # one stretch for every tile of the view
    assert stretches == {driver.execute_script("return document.body.dataset.stretch")}
    before = _map_pixels(driver, tmp_path / "ndvi.png")
    share, colours = _not_blank(before)
    assert share > 0.2 and colours > 64, (share, colours)

    where = driver.find_element(By.ID, "map")  # west of the centre: the sample's fields
    ActionChains(driver).move_to_element_with_offset(
        where, -where.size["width"] // 3, -where.size["height"] // 5).click().perform()
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#series circle.ts-point"),
          "the time-series chart")  # fmt: skip
    lon, lat = driver.execute_script("const p = ocogMap.marker.getLatLng(); "
                                     "return [p.lng.toFixed(6), p.lat.toFixed(6)];")
    days = [s["datetime"][:10] for s in _info(sample)["scenes"]]
    rows = _get(sample, f"/point/{lon},{lat}", expression=DEFAULT_EXPRESSION,
                start=days[0], end=days[-1]).json()  # fmt: skip
    chart = driver.find_element(By.ID, "chart")
    assert chart.get_attribute("data-scenes") == str(len(rows)) == "12"
    points = driver.find_elements(By.CSS_SELECTOR, "#series circle.ts-point")
    assert len(points) == sum(r["value"] is not None for r in rows) > 0
    _the_same_click_drew_the_similar_cells(driver, sample, lon, lat)
    shot = tmp_path / "map_page.png"
    shot.write_bytes(driver.get_screenshot_as_png())
    if os.environ.get("OCOG_MAP_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["OCOG_MAP_SCREENSHOT"])

    box = driver.find_element(By.ID, "expression")
    box.clear()
    box.send_keys(NDWI)
    driver.find_element(By.ID, "apply").click()
    ndwi = _tiles_loaded(driver, NDWI)
    assert {src for src, *_ in ndwi}.isdisjoint(src for src, *_ in ndvi)
    after = _map_pixels(driver, tmp_path / "ndwi.png")
    assert _not_blank(after)[0] > 0.2
    changed = np.abs(after.astype(int) - before.astype(int)).max(axis=2) > 12
    assert changed.mean() > 0.2, changed.mean()

    assert not driver.find_element(By.ID, "error").is_displayed()
    loaded = driver.execute_script("return performance.getEntriesByType('resource')"
                                   ".map(e => e.name)")  # fmt: skip
    assert loaded and all(u.startswith(f"{sample.url}/") for u in loaded), loaded  # offline
