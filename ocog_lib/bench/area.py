"""A temporal reducer over an area (`ocog bench tiles --area 1024`): the 12-date median of a
1024 x 1024 px area, three ways, side by side in one run.

- ocog: `cube.reads.read_bbox` of the area at the bands' own resolution (cold: a fresh
  engine; warm: again), reading only the tiles the area touches, through the engine.
- download: what a user without a cube does: copy every file the computation needs (each
  scene's expression bands and mask) in full, through the same path (a local copy, or S3
  GETs of whole objects through the same shaper, 8 at a time), then read them with
  rasterio and reduce with numpy's nan-reducer. Its output must equal ocog's (NaN ==
  NaN) or it gets no speed.
- VirtuGhan's export (`--peers virtughan`, local files only): `VirtughanProcessor.compute()`
  over the same scenes and the area's WGS84 box (its own window arithmetic, no cloud
  mask: another quantity, not compared).

The stack is the sample's derived one at the area's size (`build_time_stack(dates, size)`,
built on first use under $OCOG_DATA_DIR/timestack/), so the area is its whole scene: the
case where ocog has no partial read to win by, only concurrency and no copy. Rows:
DuckDB table `area_benchmarks`; `ratio_vs_ocog` = row p50 / ocog's cold p50 at its
location (> 1: ocog faster).
"""

from __future__ import annotations

import shutil
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ocog_lib.bench.tile_readers import NP_REDUCERS
from ocog_lib.bench.tile_sites import Site, site
from ocog_lib.cube.expression import Expression
from ocog_lib.cube.stack import SceneStack
from ocog_lib.settings import Settings

DOWNLOAD_THREADS = 8


@dataclass(frozen=True)
class AreaRow:
    dataset: str  # the area's stack
    loader: str  # ocog | download | virtughan
    location: str  # local | remote
    state: str  # cold | warm (ocog); "-" (download, virtughan: every run starts afresh)
    dates: int
    width: int
    height: int
    reducer: str
    p50_ms: float | None  # median over repeats; None: output differs from ocog's
    bytes_read: float | None  # ocog: stored bytes fetched; download: file bytes copied
    equal: bool | None  # output equals ocog's (NaN == NaN); None: not compared
    ratio_vs_ocog: float | None  # this p50 / ocog's cold p50 at the location
    note: str = ""


def area_stack(cfg, settings: Settings) -> SceneStack:
    from ocog_lib.data.timestack import build_time_stack

    folder = Path(settings.data_dir) / "timestack" / f"sample-s2-{cfg.area}px-{cfg.area_dates}d"
    if not (folder / "stack.json").exists():
        build_time_stack(folder, dates=cfg.area_dates, size=cfg.area)
    return SceneStack.load(folder)


def compare_area(cfg, settings: Settings, say=lambda _m: None) -> tuple[tuple, list[str]]:
    """(rows, notes) of the area benchmark at each of `cfg.locations`."""
    from ocog_lib.cube.sources import raster_info

    stack = area_stack(cfg, settings)
    expr = Expression.parse(cfg.expression, stack.bands, stack.aliases)
    g = raster_info(stack.uri(stack.scenes[0], expr.bands[0])).geometry
    left, top = g.transform * (0, 0)
    right, bottom = g.transform * (g.width, g.height)
    box = (left, bottom, right, top)
    rows, notes = [], []
    for location in cfg.locations:
        with site(location, stack, settings, rtt_ms=cfg.rtt_ms, cap_mb_s=cfg.cap_mb_s,
                  bucket=cfg.bucket, say=say) as where:  # fmt: skip
            rows += _at_site(where, expr, box, g, cfg, say)
    if "virtughan" in cfg.peers:
        row, note = _virtughan(stack, expr, box, g, cfg, settings, rows, say)
        rows += [row] if row else []
        notes += [note]
    return tuple(rows), notes


def _at_site(where: Site, expr, box, g, cfg, say) -> list[AreaRow]:
    """ocog cold, ocog warm and the download, interleaved over repeats."""
    ms: dict = {"cold": [], "warm": [], "download": []}
    nbytes: dict = {"cold": [], "warm": [], "download": []}
    equal = True
    for repeat in range(cfg.repeats):
        say(f"area {where.location} repeat {repeat + 1}/{cfg.repeats}")
        order = ("ocog", "download") if repeat % 2 == 0 else ("download", "ocog")
        got = {}
        for loader in order:
            if loader == "ocog":
                got["ocog"] = _ocog(where.stack, expr, box, g, cfg, ms, nbytes)
            else:
                t0 = time.perf_counter()
                got["download"], n = _download(where.stack, expr, cfg.reducer)
                ms["download"].append((time.perf_counter() - t0) * 1e3)
                nbytes["download"].append(n)
        equal = equal and bool(np.array_equal(got["ocog"], got["download"], equal_nan=True))
    cold = float(np.median(ms["cold"]))
    rows = []
    for state in ("cold", "warm", "download"):
        loader = "download" if state == "download" else "ocog"
        p50 = float(np.median(ms[state]))
        ok = True if loader == "ocog" else equal
        note = "" if ok else "output differs from ocog's: no speed reported"
        rows.append(AreaRow(where.stack.name, loader, where.location,
                            "-" if loader == "download" else state, len(where.stack.scenes),
                            g.width, g.height, cfg.reducer,
                            p50 if ok else None, float(np.median(nbytes[state])),
                            None if loader == "ocog" else equal,
                            p50 / cold if ok else None, note))  # fmt: skip
    return rows


def _ocog(stack, expr, box, g, cfg, ms, nbytes) -> np.ndarray:
    """read_bbox on a fresh engine (cold), then again (warm); the cold output."""
    from ocog_lib.cube import sources
    from ocog_lib.cube.reads import read_bbox

    eng = sources.engine(sources.DEFAULT_CACHE_BYTES)
    out = None
    for state in ("cold", "warm"):
        before = eng.fetcher.bytes_read
        t0 = time.perf_counter()
        arr = read_bbox(stack, box, crs=g.crs, resolution=(abs(g.transform.a),
                        abs(g.transform.e)), expression=expr, reducer=cfg.reducer)  # fmt: skip
        ms[state].append((time.perf_counter() - t0) * 1e3)
        nbytes[state].append(eng.fetcher.bytes_read - before)
        out = arr.data if out is None else out
    return out


def _download(stack: SceneStack, expr: Expression, reducer: str) -> tuple[np.ndarray, int]:
    """Every needed file copied whole to a temporary folder, then rasterio + numpy."""
    assets = [*expr.bands, *([stack.mask_asset] if stack.mask_asset else [])]
    jobs = [(i, a, stack.uri(s, a)) for i, s in enumerate(stack.scenes) for a in assets]
    folder = Path(tempfile.mkdtemp(prefix="ocog-area-"))
    try:
        with ThreadPoolExecutor(DOWNLOAD_THREADS) as pool:
            sizes = list(pool.map(lambda j: _fetch(j[2], folder / f"{j[0]}-{j[1]}.tif"), jobs))
        layers = [_scene_layer(stack, expr, i, folder) for i in range(len(stack.scenes))]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels stay NaN
        data = NP_REDUCERS[reducer](np.stack(layers), axis=0).astype(np.float32)
    return data, sum(sizes)


def _fetch(uri: str, dest: Path) -> int:
    if "://" not in uri:
        shutil.copyfile(uri, dest)
        return dest.stat().st_size
    from ocog_lib.storage import open_source

    src = open_source(uri)
    dest.write_bytes(src.read(0, src.size()))
    return dest.stat().st_size


def _scene_layer(stack: SceneStack, expr: Expression, i: int, folder: Path) -> np.ndarray:
    """One scene's expression: nodata (the file's, else 0) and masked pixels NaN."""
    import rasterio

    from ocog_lib.cube import masks
    from ocog_lib.cube.reads import DN_NODATA, scaled, to_float

    scene, bands = stack.scenes[i], {}
    for band in expr.bands:
        with rasterio.open(folder / f"{i}-{band}.tif") as ds:
            nodata = ds.nodata if ds.nodata is not None else DN_NODATA
            bands[band] = scaled(scene, band, to_float(ds.read(1), nodata))
    if stack.mask_asset:
        with rasterio.open(folder / f"{i}-{stack.mask_asset}.tif") as ds:
            keep = masks.keep(stack.mask_kind, ds.read(1))
        for arr in bands.values():
            arr[~keep] = np.nan
    return expr.evaluate(bands)


def _virtughan(stack, expr, box, g, cfg, settings, rows, say) -> tuple[AreaRow | None, str]:
    """VirtuGhan's export of the area's WGS84 box (slightly inside it: its window comes
    from two transformed corners), against ocog's local cold p50."""
    from rasterio.warp import transform_bounds

    from ocog_lib.bench.virtughan_peer import PeerUnavailable, export_times

    w, s, e, n = transform_bounds(g.crs, "EPSG:4326", *box, densify_pts=21)
    dx, dy = (e - w) * 0.01, (n - s) * 0.01
    try:
        out = export_times(stack, expr, cfg.reducer, (w + dx, s + dy, e - dx, n - dy),
                           cfg.repeats, settings, say)  # fmt: skip
    except PeerUnavailable as exc:
        return None, f"virtughan export: skipped ({exc})"
    cold = next((r.p50_ms for r in rows if r.loader == "ocog" and r.location == "local"
                 and r.state == "cold"), None)  # fmt: skip
    p50 = float(np.median(out["ms"]))
    core = [c for c in out["core_ms"] if c is not None]
    note = (f"VirtuGhan {out.get('version')} VirtughanProcessor.compute() over "
            f"{out['scenes']} scenes: reads + band math {np.median(core):.0f} ms of it, the "
            "rest its median (np.ma), GeoTIFF, colormap PNG and plot; no cloud mask, its "
            "own window: not compared")  # fmt: skip
    row = AreaRow(stack.name, "virtughan", "local", "-", out["scenes"], g.width, g.height,
                  cfg.reducer, p50, None, None, p50 / cold if cold else None, note)
    return row, f"virtughan export: {note}"


def format_areas(areas) -> str:
    from ocog_lib.results import format_table

    table = [[a.loader, a.location, a.state, a.dates, f"{a.width}x{a.height}", a.reducer,
              "-" if a.p50_ms is None else f"{a.p50_ms:.0f}",
              "-" if a.bytes_read is None else f"{a.bytes_read / 1e6:.1f}",
              "-" if a.ratio_vs_ocog is None else f"{a.ratio_vs_ocog:.2f}",
              "-" if a.equal is None else str(a.equal).lower()] for a in areas]  # fmt: skip
    head = ["area: loader", "location", "state", "dates", "px", "reducer", "p50 ms", "MB read",
            "x ocog cold", "equal"]  # fmt: skip
    return "\n".join([format_table(head, table),
                      "x ocog cold: this p50 / ocog's cold p50 at the same location "
                      "(> 1: ocog faster)"])  # fmt: skip


def area_rows_for_db(result, host: dict, git_sha: str | None) -> list[dict]:
    """`area_benchmarks` rows of a tiles run."""
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    keep = ("expression", "reducer", "repeats", "rtt_ms", "cap_mb_s", "area", "area_dates")
    config = {k: result.config.get(k) for k in keep}
    out = []
    for a in result.areas:
        row = asdict(a)
        note = row.pop("note")
        out.append({**row, "run_id": result.run_id, "measured_at": now, "git_sha": git_sha,
                    "host": host, "content_hash": result.content_hash,
                    "config": {**config, **({"note": note} if note else {})}})  # fmt: skip
    return out
