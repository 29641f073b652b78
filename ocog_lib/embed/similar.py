"""Find places like this one: a point -> its patch -> the k most similar H3 cells.

The query patch is the stored patch whose centre is nearest the point (at `time`, when
given); its vector is searched exactly in DuckDB (array_cosine_similarity over the set) or
in the set's HNSW index (`embed.index`, checked fresh first). Results are cells: a cell
whose patches (several times, overlapping windows) match keeps its best score, and the
query's own cell is left out. `within_km` restricts the results to a radius around the
point; the radius is applied first, so that search is exact among the rows inside it.

Refused, each naming the input: a point farther from every patch than the reach of the
patches (an H3 cell's diameter at the set's resolution, or 1.5 x the spacing of the
patches near it), a time with no patch, k outside 1..MAX_K, no embeddings yet.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import duckdb
import numpy as np

from ocog_lib import results
from ocog_lib.embed.index import AnnIndex, HnswConfig, IndexCache, open_index
from ocog_lib.embed.store import TABLE, NoEmbeddings, StoredSet, pick_set, read_sets
from ocog_lib.errors import InputError

MAX_K = 1000
EARTH_KM = 6371.0088
_META = 'idx, cell, lon, lat, time, source, "row", col, coalesce(label, -1) AS label'


class OutsideData(InputError):
    """The point is not covered by any stored set (of the dataset asked for)."""


class UnknownTime(InputError):
    """No patch of the set has the time asked for."""


@dataclass(frozen=True)
class SimilarQuery:
    lon: float
    lat: float
    k: int = 10
    time: str | None = None  # ISO date (that day) or datetime (that instant), UTC
    within_km: float | None = None
    dataset: str | None = None  # None: the dataset whose patches cover the point
    model_id: str | None = None  # None: the dataset's newest set
    exact: bool = False

    def __post_init__(self) -> None:
        for name, lo, hi in (("lon", -180.0, 180.0), ("lat", -90.0, 90.0)):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and lo <= value <= hi):
                raise InputError(f"{name} {value!r}", f"must be a number in {lo:g}..{hi:g}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= MAX_K:
            raise InputError(f"k {self.k!r}", f"must be an integer in 1..{MAX_K}")
        if self.within_km is not None and not (math.isfinite(self.within_km)
                                               and self.within_km > 0):  # fmt: skip
            raise InputError(f"within_km {self.within_km!r}", "must be a positive distance")
        if self.time is not None:
            parse_time(self.time)


@dataclass(frozen=True)
class Patch:
    """One stored patch: where it is, what it holds, and how far it is from the point."""

    cell: str  # H3 cell (text form)
    lon: float
    lat: float
    time: str | None
    source: str
    row: int
    col: int
    label: int
    label_name: str | None
    distance_km: float  # from the query point
    score: float | None = None  # cosine similarity to the query patch (None: the query)


HAMMING = "hamming"  # the method of a hash-code search (compress.similar): dim is bits


@dataclass(frozen=True)
class SimilarResult:
    query: SimilarQuery
    dataset: str
    model_id: str
    dim: int  # vector dimension, or a code's bits when method is HAMMING
    rows: int  # vectors (or codes) in the set
    method: str  # exact | hnsw | exact-within | hamming
    index: str | None  # the index's action: loaded, cached, built, extended, rebuilt
    query_patch: Patch
    matches: tuple[Patch, ...] = field(default=())

    def to_dict(self) -> dict:
        return asdict(self)


def parse_time(text: str) -> tuple[np.datetime64, bool]:
    """(instant, whole_day): an ISO date means that day, a datetime that instant (UTC)."""
    raw = str(text).strip()
    try:
        value = np.datetime64(raw.rstrip("Zz"), "us")
    except ValueError:
        raise InputError(f"time {text!r}", "not an ISO 8601 date or datetime") from None
    if np.isnat(value):
        raise InputError(f"time {text!r}", "not an ISO 8601 date or datetime")
    return value, len(raw) == 10


def find_similar(db_path: str | Path, query: SimilarQuery, *,
                 classes: Mapping[int, str] | None = None, config: HnswConfig | None = None,
                 on_stale: str = "rebuild", cache: IndexCache | None = None) -> SimilarResult:
    """The query patch of `query`'s point and its k most similar cells (see the module).
    One read-only connection throughout: the set, its index check and its rows agree."""
    if not Path(db_path).exists():
        raise NoEmbeddings(db_path, "no results file, so no embeddings yet (embed a dataset "
                           "first, e.g. `ocog demo`)")  # fmt: skip
    with results.connect(db_path, read_only=True) as con:
        stored, centre = _locate(con, _candidate_sets(con, db_path, query), query)
        vector = _vector(con, stored, centre["idx"])
        if query.exact or query.within_km is not None:
            method, action = ("exact-within" if query.within_km else "exact"), None
            hits = _exact(con, stored, vector, int(centre["cell"]), query)
        else:
            ann = (cache.get(con, db_path, stored, config=config, on_stale=on_stale) if cache
                   else open_index(con, db_path, stored, config=config, on_stale=on_stale))
            method, action = "hnsw", ann.action
            hits = _approximate(con, ann, stored, vector, int(centre["cell"]), query.k)
        matches = _patches(con, stored, hits, query, classes)
    return SimilarResult(query, stored.dataset, stored.model_id, stored.dim, stored.rows,
                         method, action, _patch(centre, query, classes), matches)  # fmt: skip


def _candidate_sets(con: duckdb.DuckDBPyConnection, db_path: str | Path,
                    query: SimilarQuery) -> list[StoredSet]:  # fmt: skip
    """The set asked for, or the newest set of every dataset."""
    sets = read_sets(con)
    if query.dataset is not None:
        return [pick_set(sets, db_path, query.dataset, query.model_id)]
    newest: dict[str, StoredSet] = {}
    for s in sets:  # newest first: the first set of each dataset
        if query.model_id in (None, s.model_id):
            newest.setdefault(s.dataset, s)
    if not newest:
        raise NoEmbeddings(f"model {query.model_id!r}" if query.model_id else db_path,
                           "no embeddings yet (embed a dataset first, e.g. `ocog demo`)")
    return list(newest.values())


# --- the query patch ---------------------------------------------------------------------


def _locate(con: duckdb.DuckDBPyConnection, candidates: list[StoredSet],
            query: SimilarQuery) -> tuple[StoredSet, dict]:  # fmt: skip
    """The set covering the point (nearest patch within its reach) and the query patch."""
    found, misses = [], []
    for stored in candidates:
        near = _nearest(con, stored, query.lon, query.lat, None)
        reach = _reach_km(con, stored, near)
        if near["distance_km"] <= reach:
            found.append((near["distance_km"], stored, near))
        else:
            misses.append(f"{stored.dataset}: nearest patch {near['distance_km']:.3g} km away, "
                          f"reach {reach:.3g} km")  # fmt: skip
    if not found:
        raise OutsideData(f"point lon={query.lon:g} lat={query.lat:g}",
                          "outside every dataset's patches (" + "; ".join(misses) + ")")
    _, stored, near = min(found, key=lambda f: f[0])
    if query.time is None:
        return stored, near
    centre = _nearest(con, stored, query.lon, query.lat, query.time)
    if centre is None:
        raise UnknownTime(f"time {query.time!r}", f"no patch of {stored.dataset} has it "
                          f"(times: {_times_of(con, stored)})")  # fmt: skip
    if centre["distance_km"] > _reach_km(con, stored, centre):
        raise OutsideData(f"point lon={query.lon:g} lat={query.lat:g} at time {query.time}",
                          f"no patch of {stored.dataset} at that time near it (nearest "
                          f"{centre['distance_km']:.3g} km away)")  # fmt: skip
    return stored, centre


def _distance_sql(lon: float, lat: float) -> str:
    """Great-circle km from (lon, lat), a literal (both checked finite floats)."""
    p1, l1 = math.radians(lat), math.radians(lon)
    return (f"2 * {EARTH_KM!r} * asin(sqrt(pow(sin((radians(lat) - {p1!r}) / 2), 2) + "
            f"cos({p1!r}) * cos(radians(lat)) * pow(sin((radians(lon) - {l1!r}) / 2), 2)))")


def _time_sql(text: str | None) -> tuple[str, list]:
    if text is None:
        return "", []
    value, whole_day = parse_time(text)
    if whole_day:
        return " AND CAST(time AS DATE) = ?", [dt.date.fromisoformat(str(value)[:10])]
    return " AND time = ?", [value.astype(dt.datetime)]


def _nearest(con: duckdb.DuckDBPyConnection, stored: StoredSet, lon: float, lat: float,
             time: str | None) -> dict | None:  # fmt: skip
    when, params = _time_sql(time)
    cur = con.execute(
        f"SELECT {_META}, {_distance_sql(lon, lat)} AS distance_km FROM {TABLE} WHERE "
        f"dataset = ? AND model_id = ?{when} ORDER BY distance_km, idx LIMIT 1",
        [stored.dataset, stored.model_id, *params])  # fmt: skip
    row = cur.fetchone()
    return dict(zip([d[0] for d in cur.description], row, strict=True)) if row else None


def _reach_km(con: duckdb.DuckDBPyConnection, stored: StoredSet, near: dict) -> float:
    """How far from a patch centre a point still counts as covered: a cell's diameter at
    the set's H3 resolution, or 1.5 x the distance to the next patch elsewhere."""
    import h3

    res = h3.get_resolution(h3.int_to_str(int(near["cell"])))
    cell_km = 2 * h3.average_hexagon_edge_length(res, unit="km")
    row = con.execute(
        f"SELECT min({_distance_sql(near['lon'], near['lat'])}) FROM {TABLE} WHERE "
        f"dataset = ? AND model_id = ? AND (lon <> ? OR lat <> ?)",
        [stored.dataset, stored.model_id, near["lon"], near["lat"]]).fetchone()  # fmt: skip
    spacing = float(row[0]) if row and row[0] is not None else 0.0
    return max(cell_km, 1.5 * spacing)


def _times_of(con: duckdb.DuckDBPyConnection, stored: StoredSet) -> str:
    rows = con.execute(
        f"SELECT DISTINCT time FROM {TABLE} WHERE dataset = ? AND model_id = ? ORDER BY time "
        "LIMIT 13", [stored.dataset, stored.model_id]).fetchall()  # fmt: skip
    shown = ["none" if t is None else t.isoformat() for (t,) in rows[:12]]
    return ", ".join(shown) + (", ..." if len(rows) > 12 else "")


def _vector(con: duckdb.DuckDBPyConnection, stored: StoredSet, idx: int) -> np.ndarray:
    row = con.execute(f"SELECT vector FROM {TABLE} WHERE dataset = ? AND model_id = ? AND "
                      "idx = ?", [stored.dataset, stored.model_id, idx]).fetchone()
    return np.asarray(row[0], dtype=np.float32)


# --- the search --------------------------------------------------------------------------


def _exact(con: duckdb.DuckDBPyConnection, stored: StoredSet, vector: np.ndarray, cell: int,
           query: SimilarQuery) -> list[tuple[int, float]]:  # fmt: skip
    """(idx, score) of the best patch of each of the k best cells, by a full scan."""
    within = ""
    if query.within_km is not None:
        within = f" AND {_distance_sql(query.lon, query.lat)} <= {float(query.within_km)!r}"
    d = stored.dim
    rows = con.execute(
        f"SELECT arg_max(idx, score) AS idx, max(score) AS score FROM (SELECT idx, cell, "
        f"array_cosine_similarity(vector::FLOAT[{d}], ?::FLOAT[{d}]) AS score FROM {TABLE} "
        f"WHERE dataset = ? AND model_id = ? AND cell <> ?{within}) GROUP BY cell "
        f"ORDER BY score DESC, cell LIMIT ?",
        [vector.tolist(), stored.dataset, stored.model_id, cell, query.k]).fetchall()
    return [(int(i), float(s)) for i, s in rows]


def _approximate(con: duckdb.DuckDBPyConnection, ann: AnnIndex, stored: StoredSet,
                 vector: np.ndarray, cell: int, k: int) -> list[tuple[int, float]]:  # fmt: skip
    """The index's nearest rows, widened until they hold k cells other than the query's."""
    count = min(stored.rows, max(4 * k, 32))
    while True:
        keys, scores = ann.search(vector, count)
        cells = _cells_of(con, stored, keys)
        best: dict[int, tuple[int, float]] = {}
        for key, score in zip(keys.tolist(), scores.tolist(), strict=True):
            c = cells[key]
            if c != cell and c not in best:  # scores come best first
                best[c] = (key, score)
        if len(best) >= k or count >= stored.rows:
            return list(best.values())[:k]
        count = min(stored.rows, count * 4)


def _cells_of(con: duckdb.DuckDBPyConnection, stored: StoredSet,
              keys: np.ndarray) -> dict[int, int]:  # fmt: skip
    rows = con.execute(
        f"SELECT idx, cell FROM {TABLE} WHERE dataset = ? AND model_id = ? AND "
        "idx IN (SELECT unnest(?::BIGINT[]))",
        [stored.dataset, stored.model_id, keys.tolist()]).fetchall()  # fmt: skip
    found = {int(i): int(c) for i, c in rows}
    if len(found) != len(set(keys.tolist())):
        raise InputError(f"index of {stored.dataset}/{stored.model_id}",
                         "names rows the set does not hold: rebuild it")  # fmt: skip
    return found


def _patches(con: duckdb.DuckDBPyConnection, stored: StoredSet, hits: list[tuple[int, float]],
             query: SimilarQuery, classes: Mapping[int, str] | None) -> tuple[Patch, ...]:
    if not hits:
        return ()
    cur = con.execute(
        f"SELECT {_META}, {_distance_sql(query.lon, query.lat)} AS distance_km FROM {TABLE} "
        "WHERE dataset = ? AND model_id = ? AND idx IN (SELECT unnest(?::BIGINT[]))",
        [stored.dataset, stored.model_id, [i for i, _ in hits]])  # fmt: skip
    names = [d[0] for d in cur.description]
    by_idx = {r[0]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}
    return tuple(_patch(by_idx[i], query, classes, score) for i, score in hits)


def _patch(row: dict, query: SimilarQuery, classes: Mapping[int, str] | None,
           score: float | None = None) -> Patch:  # fmt: skip
    import h3

    label = int(row["label"])
    when = row["time"]
    return Patch(h3.int_to_str(int(row["cell"])), float(row["lon"]), float(row["lat"]),
                 None if when is None else when.isoformat(), str(row["source"]),
                 int(row["row"]), int(row["col"]), label,
                 (classes or {}).get(label), round(float(row["distance_km"]), 4),
                 None if score is None else round(float(score), 6))  # fmt: skip


def dataset_classes(data_dir: str | Path, dataset: str) -> dict[int, str]:
    """Class id -> name from the prepared dataset's manifest; {} when it has none."""
    from ocog_lib.data.manifest import DatasetManifest

    try:
        manifest = DatasetManifest.load(Path(data_dir) / "prepared" / dataset)
    except (InputError, OSError, ValueError):
        return {}
    return {int(k): str(v) for k, v in (getattr(manifest, "classes", None) or {}).items()}


def name_labels(result: SimilarResult, classes: Mapping[int, str]) -> SimilarResult:
    """The result with each label's class name (from the dataset's manifest) filled in."""
    if not classes:
        return result

    def named(p: Patch) -> Patch:
        return replace(p, label_name=classes.get(p.label, p.label_name))

    return replace(result, query_patch=named(result.query_patch),
                   matches=tuple(named(m) for m in result.matches))


def format_similar(result: SimilarResult) -> str:
    """The query patch, then one line per match."""
    q = result.query_patch
    what = (f"{result.dim}-bit codes, {result.rows} codes" if result.method == HAMMING
            else f"{result.dim}-d, {result.rows} vectors")  # fmt: skip
    head = (f"{result.dataset} / model {result.model_id} ({what}, "
            f"{result.method}{', index ' + result.index if result.index else ''})\n"
            f"query patch: cell {q.cell} at {q.lon:.5f}, {q.lat:.5f} ({q.distance_km:.3f} km "
            f"from the point), {q.source} row {q.row} col {q.col}, label "
            f"{_label(q)}{', time ' + q.time if q.time else ''}")  # fmt: skip
    columns = ["rank", "cell", "score", "label", "lon", "lat", "km", "time", "source"]
    rows = [[i + 1, m.cell, m.score, _label(m), round(m.lon, 5), round(m.lat, 5),
             round(m.distance_km, 3), m.time or "", m.source]
            for i, m in enumerate(result.matches)]  # fmt: skip
    return head + "\n" + results.format_table(columns, rows)


def _label(p: Patch) -> str:
    if p.label < 0:
        return "none"
    return f"{p.label} {p.label_name}" if p.label_name else str(p.label)
