"""Find places like this one by hash code: a point -> its archived patch -> the k patches
whose codes are nearest in Hamming distance.

The semantics are `embed.similar`'s, over a compressed archive instead of embeddings:
the query patch is the archived patch whose centre is nearest the point (at `time`, when
given: an ISO date means that day, a datetime that instant); a point farther from every
patch than the patches' reach (an H3 cell's diameter at the archive's resolution, or
1.5 x the spacing of the patches near it) is `OutsideData`, a time no patch has is
`UnknownTime`. `dataset` None: the dataset whose newest archive covers the point;
`model_id`: the archive's model id or codec id (None: the dataset's newest archive).

The search is exact (`hamming.hamming_search`) over the codes and locations the archive
stores (`archive.read_codes`: never a bitstream, never a pixel): the query patch's code
against every other patch's (within `within_km` of the point when given, the radius
applied first), ties by idx. A match's score is 1 - Hamming / bits: 1.0 is the query's own
code. Matches are patches, not cells: a hash code says which patches look alike, and two
of them may share a cell. `exact` has no effect: the search always is.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ocog_lib import results
from ocog_lib.compress.archive import (
    ArchiveCodes,
    NoArchive,
    StoredArchive,
    read_codes,
    stored_archives,
)
from ocog_lib.compress.hamming import hamming_search
from ocog_lib.embed.similar import (
    EARTH_KM,
    HAMMING,
    OutsideData,
    Patch,
    SimilarQuery,
    SimilarResult,
    UnknownTime,
    parse_time,
)

METHOD = HAMMING


def find_similar_by_hash(db_path: str | Path, query: SimilarQuery, *,
                         classes: Mapping[int, str] | None = None) -> SimilarResult:
    """The query patch of `query`'s point and the k patches nearest its hash code (see the
    module). One read-only connection reads every candidate archive's codes."""
    if not Path(db_path).exists():
        raise NoArchive(db_path, "no results file, so no compressed archive yet (run `ocog "
                        "compress` first)")  # fmt: skip
    with results.connect(db_path, read_only=True) as con:
        archives = [read_codes(con, a) for a in _candidates(con, db_path, query)]
    arc, centre, dist = _locate(archives, query)
    matches = _matches(arc, centre, dist, query, classes)
    return SimilarResult(query, arc.dataset, arc.model_id, arc.bits, len(arc), METHOD, None,
                         _patch(arc, centre, dist[centre], classes), matches)  # fmt: skip


def _candidates(con, db_path: str | Path, query: SimilarQuery) -> list[StoredArchive]:
    """The newest archive of each dataset (of the dataset, model or codec asked for)."""
    archives = [a for a in stored_archives(con, query.dataset)
                if query.model_id in (None, a.model_id, a.codec_id)]  # fmt: skip
    if not archives:
        what = (f"dataset {query.dataset!r}" if query.dataset else
                f"model {query.model_id!r}" if query.model_id else str(db_path))
        raise NoArchive(what, f"no compressed archive{' of it' if query.model_id else ''} in "
                        f"{db_path} (run `ocog compress` first)")  # fmt: skip
    newest: dict[str, StoredArchive] = {}
    for a in archives:  # newest first
        newest.setdefault(a.dataset, a)
    return list(newest.values())


def distances_km(lon: np.ndarray, lat: np.ndarray, lon0: float, lat0: float) -> np.ndarray:
    """Great-circle km from (lon0, lat0): the haversine `embed.similar` computes in SQL."""
    p1, l1 = math.radians(lat0), math.radians(lon0)
    p2, l2 = np.radians(lat), np.radians(lon)
    h = np.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * np.cos(p2) * np.sin((l2 - l1) / 2) ** 2
    return 2 * EARTH_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def _reach_km(arc: ArchiveCodes, i: int) -> float:
    """A cell's diameter at the archive's H3 resolution, or 1.5 x the distance from patch i
    to the next patch elsewhere."""
    import h3

    res = h3.get_resolution(h3.int_to_str(int(arc.cells[i])))
    cell_km = 2 * h3.average_hexagon_edge_length(res, unit="km")
    elsewhere = (arc.lon != arc.lon[i]) | (arc.lat != arc.lat[i])
    d = distances_km(arc.lon[elsewhere], arc.lat[elsewhere], arc.lon[i], arc.lat[i])
    return max(cell_km, 1.5 * float(d.min()) if len(d) else 0.0)


def _locate(archives: list[ArchiveCodes], query: SimilarQuery
            ) -> tuple[ArchiveCodes, int, np.ndarray]:  # fmt: skip
    """The archive covering the point, its query patch and every patch's km to the point."""
    found, misses = [], []
    for arc in archives:
        dist = distances_km(arc.lon, arc.lat, query.lon, query.lat)
        i = int(np.argmin(dist))  # the lowest idx among equals
        reach = _reach_km(arc, i)
        if dist[i] <= reach:
            found.append((float(dist[i]), arc, i, dist))
        else:
            misses.append(f"{arc.dataset}: nearest patch {dist[i]:.3g} km away, reach "
                          f"{reach:.3g} km")  # fmt: skip
    if not found:
        raise OutsideData(f"point lon={query.lon:g} lat={query.lat:g}",
                          "outside every archive's patches (" + "; ".join(misses) + ")")
    _, arc, i, dist = min(found, key=lambda f: f[0])
    if query.time is None:
        return arc, i, dist
    at = _at_time(arc, query.time)
    if not at.any():
        raise UnknownTime(f"time {query.time!r}", f"no patch of {arc.dataset} has it "
                          f"(times: {_times_of(arc)})")  # fmt: skip
    i = int(np.argmin(np.where(at, dist, np.inf)))
    if dist[i] > _reach_km(arc, i):
        raise OutsideData(f"point lon={query.lon:g} lat={query.lat:g} at time {query.time}",
                          f"no patch of {arc.dataset} at that time near it (nearest "
                          f"{dist[i]:.3g} km away)")  # fmt: skip
    return arc, i, dist


def _at_time(arc: ArchiveCodes, text: str) -> np.ndarray:
    """bool (n,): patches of that day (an ISO date) or that instant (a datetime)."""
    value, whole_day = parse_time(text)
    if whole_day:
        return arc.time.astype("datetime64[D]") == value.astype("datetime64[D]")
    return arc.time == value


def _iso(t: np.datetime64) -> str:
    return t.astype("datetime64[us]").astype(dt.datetime).isoformat()


def _times_of(arc: ArchiveCodes) -> str:
    times = np.unique(arc.time)  # sorted, NaT last
    shown = ["none" if np.isnat(t) else _iso(t) for t in times[:12]]
    return ", ".join(shown) + (", ..." if len(times) > 12 else "")


def _matches(arc: ArchiveCodes, centre: int, dist: np.ndarray, query: SimilarQuery,
             classes: Mapping[int, str] | None) -> tuple[Patch, ...]:  # fmt: skip
    """The k patches nearest the query patch's code, itself left out, the radius first."""
    keep = np.ones(len(arc), dtype=bool)
    keep[centre] = False
    if query.within_km is not None:
        keep &= dist <= query.within_km
    candidates = np.flatnonzero(keep)
    if not len(candidates):
        return ()
    hits = hamming_search(arc.codes[centre : centre + 1], arc.codes[candidates], query.k)
    rows = candidates[hits.indices[0]]
    scores = 1.0 - hits.distances[0] / arc.bits
    return tuple(_patch(arc, int(i), dist[i], classes, float(s))
                 for i, s in zip(rows, scores, strict=True))  # fmt: skip


def _patch(arc: ArchiveCodes, i: int, distance_km: float, classes: Mapping[int, str] | None,
           score: float | None = None) -> Patch:  # fmt: skip
    import h3

    label, when = int(arc.labels[i]), arc.time[i]
    return Patch(h3.int_to_str(int(arc.cells[i])), float(arc.lon[i]), float(arc.lat[i]),
                 None if np.isnat(when) else _iso(when), str(arc.source[i]), int(arc.row[i]),
                 int(arc.col[i]), label, (classes or {}).get(label),
                 round(float(distance_km), 4), None if score is None else round(score, 6))
