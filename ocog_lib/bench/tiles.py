"""Tiles benchmark (W-tiles): the cube's XYZ tiles against rio-tiler's, same tiles, same pixels.

For each zoom, the same tiles (inside the data) are read by ocog (`cube.reads.read_tile`)
and by rio-tiler (a `Reader` per scene and asset, the same expression, the same SCL/BQA
mask, reduced with numpy's nan-reducer); the loaders are interleaved per repeat so drift on a
shared machine hits both (docs/benchmarks.md, Protocol). Cold is the first read of each tile
(ocog: a fresh decoded-tile cache; rio-tiler: new Readers, i.e. new datasets), warm the same
tiles again. Reported: ms per tile p50/p95 (medians over repeats), ocog's stored bytes
fetched per tile (rio-tiler's are not measured: GDAL does not say), and whether both outputs
are equal (NaN == NaN): exact for nearest.
"""

from __future__ import annotations

import re
import time
import uuid
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ocog_lib.cube import masks
from ocog_lib.cube.expression import Expression
from ocog_lib.cube.stack import SceneStack
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings

NDVI = "(nir-red)/(nir+red)"
SAMPLE_STACK = ("timestack", "sample-s2")  # under Settings.data_dir
LOADERS = ("ocog", "rio-tiler")
STATES = ("cold", "warm")
_NP_REDUCERS = {"median": np.nanmedian, "mean": np.nanmean, "min": np.nanmin,
                "max": np.nanmax, "std": np.nanstd, "var": np.nanvar, "sum": np.nansum}  # fmt: skip


@dataclass(frozen=True)
class TileBenchConfig:
    stack: str | None = None  # stack folder / stack.json; None: the sample's derived stack
    zooms: tuple[int, ...] | None = None  # None: coarsest overview, native, one finer
    tiles: int = 16  # per zoom, inside the data
    expression: str = NDVI
    reducer: str = "median"
    resampling: str = "nearest"
    repeats: int = 3
    tms: str = "WebMercatorQuad"
    size: int = 256


@dataclass(frozen=True)
class TileRow:
    loader: str
    zoom: int
    tiles: int
    state: str  # cold | warm
    p50_ms: float | None
    p95_ms: float | None
    bytes_per_tile: float | None  # None: not measured (rio-tiler)
    equal: bool | None  # both loaders' outputs equal at this zoom; None: rio-tiler missing
    ratio_vs_rio_tiler: float | None  # rio-tiler's p50 / this row's p50 (> 1: faster)
    note: str = ""


@dataclass(frozen=True)
class TileComparison:
    run_id: str
    dataset: str
    stack: str
    config: dict
    rows: tuple[TileRow, ...]
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "dataset": self.dataset, "stack": self.stack,
                "config": self.config, "notes": list(self.notes),
                "rows": [asdict(r) for r in self.rows]}  # fmt: skip


def resolve_stack(cfg: TileBenchConfig, settings: Settings) -> SceneStack:
    """The configured stack, or the sample's derived one (built on first use, then reused)."""
    if cfg.stack is not None:
        return SceneStack.load(cfg.stack)
    from ocog_lib.data.timestack import build_time_stack

    folder = Path(settings.data_dir).joinpath(*SAMPLE_STACK)
    if (folder / "stack.json").exists():  # built before (`ocog sample timestack`): as it is
        return SceneStack.load(folder)
    return SceneStack.load(build_time_stack(folder))


def default_zooms(stack: SceneStack, tms_name: str) -> tuple[int, ...]:
    """(coarsest, native, native + 1): native is rio-tiler's maxzoom rule (the zoom nearest
    the finest band's resolution), coarsest the one matching the coarsest overview."""
    import morecantile

    from ocog_lib.cube.zooms import finest_zoom, overview_levels

    native = finest_zoom(stack, tms_name)
    coarsest = max(morecantile.tms.get(tms_name).minzoom, native - overview_levels(stack))
    return tuple(sorted({coarsest, native, native + 1}))


def tiles_inside(stack: SceneStack, tms_name: str, zoom: int, n: int) -> list[tuple[int, int]]:
    """Up to `n` tiles (x, y) of `zoom` whose centre lies inside the first scene's footprint,
    spread evenly over them; every tile touching it when none has its centre inside."""
    import morecantile
    import rasterio
    from rasterio.warp import transform_bounds

    tms = morecantile.tms.get(tms_name)
    with rasterio.open(stack.uri(stack.scenes[0], stack.bands[0])) as src:
        w, s, e, nb = transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)
    touching = list(tms.tiles(w, s, e, nb, [zoom]))
    inside = [t for t in touching if _centre_inside(tms, t, (w, s, e, nb))] or touching
    if not inside:
        raise InputError(f"zoom={zoom}", f"no tile of stack {stack.name!r} at this zoom")
    step = max(1, len(inside) / n)
    picked = [inside[int(i * step)] for i in range(min(n, len(inside)))]
    return [(t.x, t.y) for t in picked]


def _centre_inside(tms, tile, bounds) -> bool:
    b = tms.bounds(tile)
    lon, lat = (b.left + b.right) / 2, (b.bottom + b.top) / 2
    return bounds[0] <= lon <= bounds[2] and bounds[1] <= lat <= bounds[3]


@dataclass
class _Tally:
    """Per (loader, zoom, state): per repeat, ms of each tile and bytes of each tile."""

    ms: dict = field(default_factory=dict)
    nbytes: dict = field(default_factory=dict)
    equal: dict = field(default_factory=dict)

    def add(self, key: tuple, ms: list[float], nbytes: list[int] | None) -> None:
        self.ms.setdefault(key, []).append(ms)
        if nbytes is not None:
            self.nbytes.setdefault(key, []).append(float(np.mean(nbytes)))


def compare_tiles(cfg: TileBenchConfig, settings: Settings, progress=None) -> TileComparison:
    """ocog vs rio-tiler over the same tiles of each zoom, cold then warm, interleaved."""
    _check(cfg)
    stack = resolve_stack(cfg, settings)
    expr = Expression.parse(cfg.expression, stack.bands, stack.aliases)
    zooms = tuple(cfg.zooms) if cfg.zooms else default_zooms(stack, cfg.tms)
    plan = {z: tiles_inside(stack, cfg.tms, z, cfg.tiles) for z in zooms}
    rio_note = _rio_tiler_missing()
    loaders = LOADERS if rio_note is None else LOADERS[:1]
    tally = _Tally()
    for repeat in range(cfg.repeats):
        for zoom in zooms:
            order = loaders if repeat % 2 == 0 else loaders[::-1]
            outputs = {}
            for loader in order:
                if progress:
                    progress(f"repeat {repeat + 1}/{cfg.repeats} zoom {zoom} {loader}")
                outputs[loader] = _measure(loader, stack, expr, plan[zoom], zoom, cfg, tally)
            if len(outputs) == 2:
                same = all(_same(a, b) for a, b in zip(*outputs.values(), strict=True))
                tally.equal[zoom] = tally.equal.get(zoom, True) and same
    rows = _rows(tally, zooms, loaders, {z: len(t) for z, t in plan.items()})
    if rio_note is not None:
        rows += tuple(TileRow("rio-tiler", z, len(plan[z]), s, None, None, None, None, None,
                              rio_note) for z in zooms for s in STATES)  # fmt: skip
    notes = (
        "bytes_per_tile: ocog's stored bytes fetched (CubeTile.bytes_fetched); "
        "rio-tiler's are not measured (None)",
    ) + ((rio_note,) if rio_note else ())
    config = {**asdict(cfg), "zooms": list(zooms), "stack": str(stack.root)}
    return TileComparison(uuid.uuid4().hex[:12], stack.name, str(stack.root), config, rows,
                          notes)  # fmt: skip


def _check(cfg: TileBenchConfig) -> None:
    for name in ("tiles", "repeats"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or value < 1:
            raise InputError(f"{name}={value!r}", "need an integer >= 1")
    if cfg.reducer not in _NP_REDUCERS:
        raise InputError(f"reducer={cfg.reducer}", "the tiles benchmark compares against "
                         f"numpy's nan-reducers: one of {', '.join(_NP_REDUCERS)}")  # fmt: skip


def _rio_tiler_missing() -> str | None:
    try:
        import rio_tiler.io  # noqa: F401
    except ImportError as exc:
        return f"rio-tiler not installed ({exc}): its rows are skipped"
    return None


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))


def _measure(loader, stack, expr, tiles, zoom, cfg, tally) -> list[np.ndarray]:
    """One loader's cold pass then warm pass over `tiles`; the cold outputs."""
    read = _ocog_reader(stack, expr, cfg) if loader == "ocog" else _RioReader(stack, expr, cfg)
    try:
        first = None
        for state in STATES:
            ms, nbytes, out = [], [], []
            for x, y in tiles:
                t0 = time.perf_counter()
                data, n = read(zoom, x, y)
                ms.append((time.perf_counter() - t0) * 1e3)
                nbytes.append(n)
                out.append(data)
            first = out if first is None else first
            tally.add((loader, zoom, state), ms, nbytes if loader == "ocog" else None)
        return first
    finally:
        getattr(read, "close", lambda: None)()


def _ocog_reader(stack, expr, cfg):
    """read_tile with a fresh decoded-tile cache (and header cache): a cold engine."""
    from ocog_lib.cube import sources
    from ocog_lib.cube.reads import read_tile

    sources.engine(sources.DEFAULT_CACHE_BYTES)

    def read(z, x, y):
        t = read_tile(stack, z, x, y, expression=expr, reducer=cfg.reducer, tms=cfg.tms,
                      size=cfg.size, resampling=cfg.resampling)  # fmt: skip
        return t.data, t.bytes_fetched

    return read


class _RioReader:
    """rio-tiler per scene and asset: new Readers (cold), kept open for the warm pass."""

    def __init__(self, stack: SceneStack, expr: Expression, cfg: TileBenchConfig):
        self.stack, self.cfg = stack, cfg
        self.bands = list(expr.bands)
        self.text = rio_expression(expr.text, self.bands, stack.aliases)
        self.readers: dict = {}

    def _reader(self, uri: str):
        from rio_tiler.io import Reader

        if uri not in self.readers:
            self.readers[uri] = Reader(uri, tms=_tms(self.cfg.tms))
        return self.readers[uri]

    def _band(self, scene, asset, z, x, y, resampling) -> np.ndarray:
        img = self._reader(self.stack.uri(scene, asset)).tile(
            x, y, z, tilesize=self.cfg.size, indexes=1, resampling_method=resampling
        )
        return img.array

    def __call__(self, z: int, x: int, y: int) -> tuple[np.ndarray, int]:
        layers = [layer for scene in self.stack.scenes
                  if (layer := self._scene(scene, z, x, y)) is not None]  # fmt: skip
        if not layers:
            raise InputError(f"tile {z}/{x}/{y}", "rio-tiler: outside every scene")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels stay NaN
            data = _NP_REDUCERS[self.cfg.reducer](np.stack(layers), axis=0)
        return data.astype(np.float32), 0

    def _scene(self, scene, z, x, y) -> np.ndarray | None:
        from rio_tiler.errors import TileOutsideBounds
        from rio_tiler.models import ImageData

        try:
            arrays = [self._band(scene, b, z, x, y, self.cfg.resampling) for b in self.bands]
            scl = (self._band(scene, self.stack.mask_asset, z, x, y, "nearest").data[0]
                   if self.stack.mask_asset else None)  # fmt: skip
        except TileOutsideBounds:
            return None
        values = np.stack([np.where(a.mask[0], np.nan, a.data[0]).astype(np.float32)
                           for a in arrays])  # fmt: skip
        if scl is not None:
            values[:, ~masks.keep(self.stack.mask_kind, scl)] = np.nan
        img = ImageData(np.ma.MaskedArray(values, mask=np.isnan(values)),
                        band_names=[f"b{i + 1}" for i in range(len(self.bands))])  # fmt: skip
        out = img.apply_expression(self.text).array
        return np.where(out.mask[0], np.nan, out.data[0]).astype(np.float32)

    def close(self) -> None:
        for reader in self.readers.values():
            reader.close()
        self.readers.clear()


def _tms(name: str):
    import morecantile

    return morecantile.tms.get(name)


def rio_expression(text: str, bands: list[str], aliases: dict[str, str]) -> str:
    """The expression with band names and aliases as rio-tiler's b1, b2, ... (`bands` order)."""
    index = {b: f"b{i + 1}" for i, b in enumerate(bands)}
    index.update({a: index[b] for a, b in aliases.items() if b in index})
    return re.sub(r"\b[A-Za-z_][A-Za-z0-9_]*\b", lambda m: index.get(m.group(), m.group()), text)


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def _rows(tally: _Tally, zooms, loaders, counts) -> tuple[TileRow, ...]:
    """Medians over repeats of each repeat's p50/p95; ocog's ratio vs rio-tiler's p50."""
    stats = {}
    for key, per_repeat in tally.ms.items():
        stats[key] = (_median([_pct(r, 50) for r in per_repeat]),
                      _median([_pct(r, 95) for r in per_repeat]))  # fmt: skip
    rows = []
    for zoom in zooms:
        for state in STATES:
            ref = stats.get(("rio-tiler", zoom, state), (None, None))[0]
            for loader in loaders:
                p50, p95 = stats[(loader, zoom, state)]
                ratio = ref / p50 if ref is not None and p50 else None
                nbytes = _median(tally.nbytes.get((loader, zoom, state), []))
                rows.append(TileRow(loader, zoom, counts[zoom], state, p50, p95, nbytes,
                                    tally.equal.get(zoom), ratio))  # fmt: skip
    return tuple(rows)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def format_tiles(result: TileComparison) -> str:
    """Side by side per zoom and state: ocog, rio-tiler, their ratio, bytes, equality."""
    from ocog_lib.results import format_table

    by = {(r.loader, r.zoom, r.state): r for r in result.rows}
    table = []
    for zoom in result.config["zooms"]:
        for state in STATES:
            o, t = by.get(("ocog", zoom, state)), by.get(("rio-tiler", zoom, state))
            table.append([zoom, state, o.tiles, f"{_ms(o.p50_ms)}/{_ms(o.p95_ms)}",
                          f"{_ms(t.p50_ms)}/{_ms(t.p95_ms)}" if t else "-",
                          "-" if o.ratio_vs_rio_tiler is None else f"{o.ratio_vs_rio_tiler:.2f}",
                          "-" if o.bytes_per_tile is None else f"{o.bytes_per_tile:.0f}",
                          "-" if o.equal is None else str(o.equal).lower()])  # fmt: skip
    head = ["zoom", "state", "tiles", "ocog p50/p95 ms", "rio-tiler p50/p95 ms",
            "ratio", "bytes/tile", "equal"]  # fmt: skip
    lines = [f"tiles benchmark {result.run_id}: stack {result.dataset} ({result.stack}), "
             f"{result.config['expression']}, {result.config['reducer']}, "
             f"{result.config['repeats']} interleaved repeat(s)",
             format_table(head, table), *(f"note: {n}" for n in result.notes),
             "ratio: rio-tiler p50 / ocog p50 (> 1: ocog faster)"]  # fmt: skip
    return "\n".join(lines)


def tile_rows_for_db(result: TileComparison, host: dict, git_sha: str | None) -> list[dict]:
    """`tile_benchmarks` rows, one per loader, zoom and state."""
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    return [{"run_id": result.run_id, "measured_at": now, "git_sha": git_sha, "host": host,
             "dataset": result.dataset, "loader": r.loader, "zoom": r.zoom, "tiles": r.tiles,
             "state": r.state, "p50_ms": r.p50_ms, "p95_ms": r.p95_ms,
             "bytes_per_tile": r.bytes_per_tile, "equal": r.equal,
             "config": {**result.config, **({"note": r.note} if r.note else {})},
             "ratio_vs_rio_tiler": r.ratio_vs_rio_tiler} for r in result.rows]  # fmt: skip


def record_tiles(result: TileComparison, settings: Settings) -> int:
    """Append the rows to DuckDB's `tile_benchmarks` (with this host and commit)."""
    from ocog_lib import results
    from ocog_lib.host import git_sha, host_facts

    rows = tile_rows_for_db(result, host_facts(), git_sha())
    return results.write_rows(settings.results_db, "tile_benchmarks", rows)
