"""Tiles benchmark (W-tiles): the cube's XYZ tiles against rio-tiler's, same tiles, same pixels.

For each location (local files; with `locations` "remote", the same files in S3 behind the
WAN shaper, `bench.tile_sites`), resampling and zoom, the same tiles (inside the data) are
read by ocog (`cube.reads.read_tile`) and by rio-tiler (a `Reader` per scene and asset, the
same expression, the same SCL/BQA mask, reduced with numpy's nan-reducer:
`bench.tile_readers`); the loaders are interleaved per repeat so drift on a shared machine
hits both (docs/benchmarks.md, Protocol). Cold is a tile read with nothing cached, as by a
new process (ocog: a fresh engine, decoded-tile and header caches empty; rio-tiler: new
Readers, i.e. new datasets, and an empty GDAL /vsicurl/ cache), warm the same tile again
right after.

Reported: ms per tile p50/p95 (medians over repeats), ocog's stored bytes fetched per tile,
remote the bytes each loader pulled through the shaper (`wire_bytes_per_tile`: rio-tiler's
only measure) and, for cold tiles, the link's limit 2 RTT + wire bytes / cap
(`limit_ms`, `ratio_vs_limit` = p50 / limit) beside the endpoint's own floor (requests per
tile / the endpoint's unshaped GETs per second). Correctness: both outputs of every tile
are compared; nearest must be bit-identical (NaN == NaN); bilinear (rio-tiler's
`resampling_method`; the warp kernel stays nearest) must put NaN in the same pixels and,
where the outputs differ, every scene's band must be within 1 DN of rio-tiler's read of it
and not all identical (`tile_readers.band_dn_diff`: 1 DN is measured on the inputs, before
the expression, since one DN moves a ratio like NDVI by an amount that depends on the
pixel; identical inputs must give identical outputs). A zoom whose outputs differ gets no
speed: its rows keep `equal` False and no p50/p95.

Peers (`peers`): VirtuGhan's tile computation in its own virtual environment
(`bench.virtughan_peer`). `area` > 0 adds the 12-date median of an area (`bench.area`):
ocog's read_bbox vs downloading the full scenes then numpy, vs VirtuGhan's export.
"""

from __future__ import annotations

import time
import uuid
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ocog_lib.bench.tile_readers import (
    LOADER_CLASSES,
    NP_REDUCERS,
    rio_env,
    rio_expression,
)
from ocog_lib.bench.tile_sites import Site, check_locations, site
from ocog_lib.cube.expression import Expression
from ocog_lib.cube.plan import check_resampling
from ocog_lib.cube.stack import SceneStack
from ocog_lib.data.lineage import folder_hash
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings

__all__ = ["NDVI", "TileBenchConfig", "TileComparison", "TileRow", "compare_tiles",
           "default_zooms", "format_tiles", "record_tiles", "resolve_stack",
           "rio_expression", "tile_rows_for_db", "tiles_inside"]  # fmt: skip

NDVI = "(nir-red)/(nir+red)"
SAMPLE_STACK = ("timestack", "sample-s2")  # under Settings.data_dir
LOADERS = ("ocog", "rio-tiler")
STATES = ("cold", "warm")
PEERS = ("virtughan",)
BILINEAR_DN = 1.0  # bilinear: every input band within this many DN of rio-tiler's
_NP_REDUCERS = NP_REDUCERS


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
    resamplings: tuple[str, ...] = ()  # rows per resampling; (): (resampling,)
    locations: tuple[str, ...] = ("local",)  # "local", "remote" (S3 through the shaper)
    rtt_ms: float = 30.0  # remote: the shaper's delay per request
    cap_mb_s: float | None = 100.0  # remote: the shaper's bandwidth cap (None: no cap)
    bucket: str | None = None  # remote: None = $OCOG_S3_BUCKET (default ocog)
    peers: tuple[str, ...] = ()  # "virtughan": its tile computation, its own venv
    area: int = 0  # side (px) of the temporal-median area benchmark; 0: skip it
    area_dates: int = 12

    def resampling_list(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.resamplings or (self.resampling,)))


@dataclass(frozen=True)
class TileRow:
    loader: str
    zoom: int
    tiles: int
    state: str  # cold | warm
    p50_ms: float | None  # None: not measured, or outputs differ (no speed for those)
    p95_ms: float | None
    bytes_per_tile: float | None  # ocog's stored bytes fetched; None: not measured
    equal: bool | None  # both loaders' outputs equal at this zoom; None: not compared
    ratio_vs_rio_tiler: float | None  # rio-tiler's p50 / this row's p50 (> 1: faster)
    note: str = ""
    location: str = "local"  # local | remote
    resampling: str = "nearest"
    wire_bytes_per_tile: float | None = None  # remote: bytes through the shaper per tile
    limit_ms: float | None = None  # remote cold: 2 RTT + wire bytes / cap
    ratio_vs_limit: float | None = None  # p50 / limit_ms (<= 1: within the link's limit)
    requests_per_tile: float | None = None  # remote: responses through the shaper
    endpoint_floor_ms: float | None = None  # remote cold: requests / endpoint GETs per s
    max_abs_diff: float | None = None  # largest |ocog - rio-tiler| over the outputs


@dataclass(frozen=True)
class TileComparison:
    run_id: str
    dataset: str
    stack: str
    config: dict
    rows: tuple[TileRow, ...]
    notes: tuple[str, ...] = field(default=())
    areas: tuple = ()  # bench.area.AreaRow, when `area` > 0
    content_hash: str | None = None  # of a local stack folder (data.lineage); None: remote

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "dataset": self.dataset, "stack": self.stack,
                "config": self.config, "notes": list(self.notes),
                "rows": [asdict(r) for r in self.rows],
                "areas": [asdict(a) for a in self.areas]}  # fmt: skip


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


BYTES_NOTE = ("bytes_per_tile: ocog's stored bytes fetched (CubeTile.bytes_fetched); "
              "rio-tiler's are not visible to Python (None), remotely both loaders' "
              "bytes through the shaper are wire_bytes_per_tile")


@dataclass
class _Tally:
    """Per (location, resampling, loader, zoom, state): per repeat each tile's ms and the
    mean bytes fetched; every tile's wire bytes and requests. Per (location, resampling,
    zoom): whether ocog's and rio-tiler's outputs agree and their largest difference."""

    ms: dict = field(default_factory=dict)
    nbytes: dict = field(default_factory=dict)
    wire: dict = field(default_factory=dict)
    requests: dict = field(default_factory=dict)
    equal: dict = field(default_factory=dict)
    diff: dict = field(default_factory=dict)
    sites: dict = field(default_factory=dict)  # location -> link facts
    notes: dict = field(default_factory=dict)  # loader -> a note for each of its rows

    def add(self, key: tuple, ms: list[float], nbytes: list[int] | None = None,
            wire: list[int] | None = None, requests: list[int] | None = None) -> None:  # fmt: skip
        self.ms.setdefault(key, []).append(ms)
        if nbytes is not None:
            self.nbytes.setdefault(key, []).append(float(np.mean(nbytes)))
        if wire:
            self.wire.setdefault(key, []).extend(wire)
        if requests:
            self.requests.setdefault(key, []).extend(requests)

    def agree(self, group: tuple, same: bool, diff: float) -> None:
        self.equal[group] = self.equal.get(group, True) and same
        self.diff[group] = max(self.diff.get(group, 0.0), diff)


def compare_tiles(cfg: TileBenchConfig, settings: Settings, progress=None) -> TileComparison:
    """ocog vs rio-tiler (and the peers) over the same tiles of each zoom, cold then warm,
    interleaved, at each location and resampling; then the area benchmark when asked."""
    _check(cfg)
    say = progress or (lambda _m: None)
    stack = resolve_stack(cfg, settings)
    content = folder_hash(stack.root) if Path(stack.root).is_dir() else None
    expr = Expression.parse(cfg.expression, stack.bands, stack.aliases)
    zooms = tuple(cfg.zooms) if cfg.zooms else default_zooms(stack, cfg.tms)
    plan = {z: tiles_inside(stack, cfg.tms, z, cfg.tiles) for z in zooms}
    rio_note = _rio_tiler_missing()
    loaders = LOADERS if rio_note is None else LOADERS[:1]
    tally, notes = _Tally(), [BYTES_NOTE]
    for location in check_locations(cfg.locations):
        with site(location, stack, settings, rtt_ms=cfg.rtt_ms, cap_mb_s=cfg.cap_mb_s,
                  bucket=cfg.bucket, say=say) as where:  # fmt: skip
            tally.sites[location] = _link_facts(where)
            for resampling in cfg.resampling_list():
                _measure_site(where, expr, zooms, plan, loaders, resampling, cfg, tally, say)
    notes += _peer_tiles(cfg, stack, expr, zooms, plan, tally, settings, say)
    rows = _rows(tally, cfg, {z: len(t) for z, t in plan.items()})
    if rio_note is not None:
        rows += tuple(TileRow("rio-tiler", z, len(plan[z]), s, None, None, None, None, None,
                              rio_note) for z in zooms for s in STATES)  # fmt: skip
        notes.append(rio_note)
    areas: tuple = ()
    if cfg.area:
        from ocog_lib.bench.area import compare_area

        areas, area_notes = compare_area(cfg, settings, say)
        notes += area_notes
    config = {**asdict(cfg), "zooms": list(zooms), "stack": str(stack.root),
              "sites": tally.sites}  # fmt: skip
    return TileComparison(uuid.uuid4().hex[:12], stack.name, str(stack.root), config, rows,
                          tuple(notes), areas, content)  # fmt: skip


def _link_facts(where: Site) -> dict:
    return {"rtt_ms": where.rtt_ms, "cap_mb_s": where.cap_mb_s,
            "endpoint_gets_s": where.endpoint_gets_s}  # fmt: skip


def _check(cfg: TileBenchConfig) -> None:
    for name in ("tiles", "repeats", "area_dates"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or value < 1:
            raise InputError(f"{name}={value!r}", "need an integer >= 1")
    if cfg.reducer not in NP_REDUCERS:
        raise InputError(f"reducer={cfg.reducer}", "the tiles benchmark compares against "
                         f"numpy's nan-reducers: one of {', '.join(NP_REDUCERS)}")  # fmt: skip
    for r in cfg.resampling_list():
        check_resampling("resampling", r)
    check_locations(cfg.locations)
    if not cfg.rtt_ms >= 0 or (cfg.cap_mb_s is not None and not cfg.cap_mb_s > 0):
        raise InputError(f"rtt_ms={cfg.rtt_ms} cap_mb_s={cfg.cap_mb_s}", "need RTT >= 0 "
                         "and a cap > 0 MB/s (or none)")  # fmt: skip
    if bad := [p for p in cfg.peers if p not in PEERS]:
        raise InputError(f"peers={','.join(bad)}", f"unknown peer; one of {', '.join(PEERS)}")
    if not isinstance(cfg.area, int) or cfg.area < 0 or 0 < cfg.area < 64:
        raise InputError(f"area={cfg.area!r}", "0 (skip) or an area side >= 64 px")


def _rio_tiler_missing() -> str | None:
    try:
        import rio_tiler.io  # noqa: F401
    except ImportError as exc:
        return f"rio-tiler not installed ({exc}): its rows are skipped"
    return None


def _measure_site(where: Site, expr, zooms, plan, loaders, resampling, cfg, tally,
                  say) -> None:  # fmt: skip
    """Every repeat and zoom at one location and resampling, loaders interleaved; the
    outputs of both compared each time."""
    for repeat in range(cfg.repeats):
        for zoom in zooms:
            order = loaders if repeat % 2 == 0 else loaders[::-1]
            outputs = {}
            for loader in order:
                say(f"{where.location} {resampling} repeat {repeat + 1}/{cfg.repeats} "
                    f"zoom {zoom} {loader}")  # fmt: skip
                outputs[loader] = _measure(loader, where, expr, plan[zoom], zoom, cfg,
                                           resampling, tally)  # fmt: skip
            if len(outputs) == 2:
                same, diff = _agree(outputs["ocog"], outputs["rio-tiler"], where.stack, expr,
                                    plan[zoom], zoom, cfg, resampling)  # fmt: skip
                tally.agree((where.location, resampling, zoom), same, diff)


def _agree(ours, theirs, stack, expr, tiles, zoom, cfg, resampling) -> tuple[bool, float]:
    """(equal, largest |difference|): nearest bit for bit; bilinear NaN in the same pixels
    and, on the tiles that differ, every input band within BILINEAR_DN of rio-tiler's but
    not all identical (identical inputs must give identical outputs)."""
    from ocog_lib.bench.tile_readers import band_dn_diff, max_abs_diff

    diffs = [max_abs_diff(a, b) for a, b in zip(ours, theirs, strict=True)]
    worst = max(diffs, default=0.0)
    if worst == 0.0:
        return True, 0.0
    if resampling == "nearest" or np.isinf(worst):
        return False, worst
    differing = [t for t, d in zip(tiles, diffs, strict=True) if d > 0]
    dn = band_dn_diff(stack, expr, differing, zoom, cfg.tms, cfg.size, resampling)
    return 0 < dn <= BILINEAR_DN, worst


def _measure(loader, where: Site, expr, tiles, zoom, cfg, resampling, tally) -> list:
    """One loader over `tiles`, each read cold (nothing cached: the loader reset) then warm
    (the same tile again at once); the cold outputs."""
    from ocog_lib.env import scoped_env

    rio = loader == "rio-tiler"
    read = LOADER_CLASSES[loader](where.stack, expr, cfg.reducer, cfg.tms, cfg.size, resampling)
    got = {s: {"ms": [], "bytes": [], "wire": [], "requests": []} for s in STATES}
    out = []
    try:
        with scoped_env(where.gdal_env) if rio else nullcontext(), (
            rio_env(where.gdal_env) if rio else nullcontext()
        ):
            for x, y in tiles:
                if read.reset() is False and where.location == "remote":
                    tally.notes[loader] = ("GDAL's /vsicurl/ cache could not be cleared: "
                                           "cold remote rows may read cached bytes")  # fmt: skip
                for state in STATES:
                    data = _timed(read, zoom, x, y, where, got[state])
                    out += [data] if state == "cold" else []
    finally:
        read.close()
    for state, g in got.items():
        tally.add((where.location, resampling, loader, zoom, state), g["ms"],
                  None if rio else g["bytes"], g["wire"], g["requests"])  # fmt: skip
    return out


def _timed(read, zoom: int, x: int, y: int, where: Site, got: dict) -> np.ndarray:
    """One tile read, its ms, bytes and (remote) what crossed the shaper, into `got`."""
    before = where.counters() if where.counters else None
    t0 = time.perf_counter()
    data, n = read(zoom, x, y)
    got["ms"].append((time.perf_counter() - t0) * 1e3)
    got["bytes"].append(n)
    if before is not None:
        d = where.counters() - before
        got["wire"].append(d.bytes_down)
        got["requests"].append(d.requests)
    return data


def _peer_tiles(cfg, stack, expr, zooms, plan, tally, settings, say) -> list[str]:
    """The peers' tile computations on the local files (rows in `tally`), and notes."""
    if "virtughan" not in cfg.peers:
        return []
    from ocog_lib.bench.virtughan_peer import PeerUnavailable, tile_times

    try:
        times = tile_times(stack, expr, plan, cfg, settings, say)
    except PeerUnavailable as exc:
        return [f"virtughan: skipped ({exc})"]
    for (zoom, state), per_repeat in times.items():
        for ms in per_repeat:
            tally.add(("local", "nearest", "virtughan", zoom, state), ms)
    tally.notes["virtughan"] = VIRTUGHAN_TILE_NOTE
    return [f"virtughan: {VIRTUGHAN_TILE_NOTE}"]


VIRTUGHAN_TILE_NOTE = (
    "VirtuGhan's TileProcessor._generate_timeseries_tile on the same COGs (its STAC search "
    "fed our scenes, its colormap and PNG left out), nearest: it reduces each band over "
    "time, then applies the formula, with no cloud mask, so its output is another quantity "
    "(not compared); a Reader is opened per band and call, so warm = its second pass")


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def _order(key: tuple) -> tuple:
    location, resampling, loader, zoom, state = key
    rank = {x: i for i, x in enumerate((*LOADERS, *PEERS))}
    return (location != "local", resampling != "nearest", resampling, zoom,
            STATES.index(state), rank.get(loader, 99))  # fmt: skip


def _rows(tally: _Tally, cfg: TileBenchConfig, counts: dict) -> tuple[TileRow, ...]:
    """Medians over repeats of each repeat's p50/p95; ratios vs rio-tiler and the link."""
    stats = {key: (_median([_pct(r, 50) for r in reps]), _median([_pct(r, 95) for r in reps]))
             for key, reps in tally.ms.items()}  # fmt: skip
    return tuple(_row(tally, key, stats, counts[key[3]]) for key in sorted(stats, key=_order))


def _row(tally: _Tally, key: tuple, stats: dict, n: int) -> TileRow:
    location, resampling, loader, zoom, state = key
    p50, p95 = stats[key]
    ref = stats.get((location, resampling, "rio-tiler", zoom, state), (None, None))[0]
    compared = loader in LOADERS
    group = (location, resampling, zoom)
    equal = tally.equal.get(group) if compared else None
    diff = tally.diff.get(group) if compared else None
    wire, reqs = _median(tally.wire.get(key, [])), _median(tally.requests.get(key, []))
    limit = floor = None
    facts = tally.sites.get(location, {})
    if location == "remote" and state == "cold" and wire is not None:
        cap = facts.get("cap_mb_s")
        limit = 2 * facts["rtt_ms"] + (wire / (cap * 1e3) if cap else 0.0)
        gets = facts.get("endpoint_gets_s")
        floor = reqs / gets * 1e3 if gets and reqs is not None else None
    note = tally.notes.get(loader, "")
    if equal is False:
        note = (f"outputs differ from rio-tiler's (max |diff| {diff:g}): no speed reported; "
                + note).rstrip("; ")  # fmt: skip
        p50 = p95 = ref = None
    return TileRow(loader, zoom, n, state, p50, p95,
                   _median(tally.nbytes.get(key, [])), equal,
                   ref / p50 if ref is not None and p50 else None, note, location, resampling,
                   wire, limit, p50 / limit if p50 is not None and limit else None, reqs,
                   floor, diff)  # fmt: skip


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _pair(row: TileRow | None) -> str:
    return f"{_ms(row.p50_ms)}/{_ms(row.p95_ms)}" if row else "-"


def _num(v: float | None, fmt: str = ".2f") -> str:
    return "-" if v is None else format(v, fmt)


def format_tiles(result: TileComparison) -> str:
    """Side by side per location, resampling, zoom and state: ocog, rio-tiler (and peers),
    their ratio, bytes, the link's limit for cold remote tiles, equality."""
    from ocog_lib.results import format_table

    by = {(r.location, r.resampling, r.loader, r.zoom, r.state): r for r in result.rows}
    peers = [p for p in PEERS if any(r.loader == p for r in result.rows)]
    remote = any(r.location == "remote" for r in result.rows)
    groups = dict.fromkeys((r.location, r.resampling, r.zoom, r.state) for r in result.rows
                           if r.loader == "ocog")  # fmt: skip
    table = []
    for loc, res, zoom, state in groups:
        o, t = by[(loc, res, "ocog", zoom, state)], by.get((loc, res, "rio-tiler", zoom, state))
        line = [loc, res, zoom, state, o.tiles, _pair(o), _pair(t)]
        line += [_pair(by.get((loc, res, p, zoom, state))) for p in peers]
        line += [_num(o.ratio_vs_rio_tiler), _num(o.bytes_per_tile, ".0f")]
        if remote:
            line += [f"{_num(o.wire_bytes_per_tile, '.0f')}/"
                     f"{_num(t.wire_bytes_per_tile if t else None, '.0f')}",
                     _num(o.limit_ms, ".1f"), _num(o.ratio_vs_limit),
                     _num(o.endpoint_floor_ms, ".1f")]  # fmt: skip
        table.append([*line, "-" if o.equal is None else str(o.equal).lower()])
    head = ["location", "resampling", "zoom", "state", "tiles", "ocog p50/p95 ms",
            "rio-tiler p50/p95 ms", *(f"{p} p50/p95 ms" for p in peers), "ratio",
            "bytes/tile"]  # fmt: skip
    if remote:
        head += ["wire B/tile ocog/rio", "limit ms", "ocog/limit", "endpoint floor ms"]
    head.append("equal")
    c = result.config
    lines = [f"tiles benchmark {result.run_id}: stack {result.dataset} ({result.stack}), "
             f"{c['expression']}, {c['reducer']}, {c['repeats']} interleaved repeat(s)"
             + (f"; remote: S3 through the shaper, RTT {c['rtt_ms']:g} ms, cap "
                f"{c['cap_mb_s']} MB/s" if remote else ""),
             format_table(head, table), *(f"note: {n}" for n in result.notes),
             "ratio: rio-tiler p50 / ocog p50 (> 1: ocog faster)"]  # fmt: skip
    if remote:
        lines.append("limit: 2 RTT + ocog's wire bytes / cap (cold remote); endpoint floor: "
                     "ocog's requests per tile / the endpoint's unshaped GETs per second")
    if result.areas:
        from ocog_lib.bench.area import format_areas

        lines.append(format_areas(result.areas))
    return "\n".join(lines)


def tile_rows_for_db(result: TileComparison, host: dict, git_sha: str | None) -> list[dict]:
    """`tile_benchmarks` rows, one per location, resampling, loader, zoom and state."""
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    sites = result.config.get("sites", {})
    return [{"run_id": result.run_id, "measured_at": now, "git_sha": git_sha, "host": host,
             "dataset": result.dataset, "loader": r.loader, "zoom": r.zoom, "tiles": r.tiles,
             "state": r.state, "p50_ms": r.p50_ms, "p95_ms": r.p95_ms,
             "bytes_per_tile": r.bytes_per_tile, "equal": r.equal,
             "config": {**result.config, **({"note": r.note} if r.note else {}),
                        "requests_per_tile": r.requests_per_tile,
                        "endpoint_floor_ms": r.endpoint_floor_ms,
                        "max_abs_diff": r.max_abs_diff, "link": sites.get(r.location)},
             "ratio_vs_rio_tiler": r.ratio_vs_rio_tiler, "location": r.location,
             "resampling": r.resampling, "wire_bytes_per_tile": r.wire_bytes_per_tile,
             "limit_ms": r.limit_ms, "ratio_vs_limit": r.ratio_vs_limit,
             "content_hash": result.content_hash}
            for r in result.rows]  # fmt: skip


def record_tiles(result: TileComparison, settings: Settings) -> int:
    """Append the rows to DuckDB's `tile_benchmarks` (and the area rows to
    `area_benchmarks`), with this host and commit; returns the tile rows written."""
    from ocog_lib import results
    from ocog_lib.host import git_sha, host_facts

    host, sha = host_facts(), git_sha()
    n = results.write_rows(settings.results_db, "tile_benchmarks",
                           tile_rows_for_db(result, host, sha))  # fmt: skip
    if result.areas:
        from ocog_lib.bench.area import area_rows_for_db

        results.write_rows(settings.results_db, "area_benchmarks",
                           area_rows_for_db(result, host, sha))  # fmt: skip
    return n
