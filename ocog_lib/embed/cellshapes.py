"""A similarity answer as GeoJSON: each H3 cell as its hexagon, for a map to draw.

The ring is h3's own `cell_to_boundary` (lat, lng pairs), turned to GeoJSON's [lon, lat]
and closed. A cell across the antimeridian would span the whole globe in plain lon: its
western vertices move by +360 so the ring stays one small hexagon (RFC 7946 allows
longitudes past 180 for that). Features: the query's cell first (role "query", rank 0),
then the matches best first (role "match", rank 1..k) with score, label and distance.
"""

from __future__ import annotations

from dataclasses import asdict

from ocog_lib.embed.similar import Patch, SimilarResult


def cell_ring(cell: str) -> list[list[float]]:
    """The closed [lon, lat] ring of H3 cell `cell` (text form)."""
    import h3

    ring = [[lng, lat] for lat, lng in h3.cell_to_boundary(cell)]
    lons = [p[0] for p in ring]
    if max(lons) - min(lons) > 180:  # across the antimeridian
        ring = [[lng + 360 if lng < 0 else lng, lat] for lng, lat in ring]
    return ring + [ring[0]]


def _feature(patch: Patch, role: str, rank: int) -> dict:
    properties = {"role": role, "rank": rank, **asdict(patch)}
    return {"type": "Feature", "id": patch.cell, "properties": properties,
            "geometry": {"type": "Polygon", "coordinates": [cell_ring(patch.cell)]}}


def similar_geojson(result: SimilarResult) -> dict:
    """A FeatureCollection of the query's cell and its matches; the search's facts (dataset,
    model, method, index action, rows) ride along as foreign members."""
    features = [_feature(result.query_patch, "query", 0)]
    features += [_feature(m, "match", i) for i, m in enumerate(result.matches, start=1)]
    return {"type": "FeatureCollection", "features": features,
            "dataset": result.dataset, "model_id": result.model_id, "dim": result.dim,
            "rows": result.rows, "method": result.method, "index": result.index,
            "query": asdict(result.query)}  # fmt: skip
