"""Small EmbeddingSets for the store, index and search tests: random unit vectors on a
lon/lat grid, real H3 cells (h3.latlng_to_cell + h3.str_to_int)."""

from __future__ import annotations

import h3
import numpy as np

from ocog_lib.embed.vectors import NO_LABEL, EmbeddingSet, normalise

RES = 8  # H3 resolution of the test cells (edge ~0.5 km)
STEP = 0.01  # degrees between patch centres (~0.9 km): one cell per patch


def grid_set(side: int = 12, dim: int = 16, *, lon0: float = -77.05, lat0: float = 38.85,
             seed: int = 0, time: str | None = "2024-05-01T10:00:00", source: str = "s2.tif",
             res: int = RES, step: float = STEP) -> EmbeddingSet:  # fmt: skip
    """side x side patches, row-major from (lon0, lat0); labels cycle 0..3 with NO_LABEL."""
    n = side * side
    rng = np.random.default_rng(seed)
    r, c = np.divmod(np.arange(n), side)
    lon, lat = lon0 + c * step, lat0 + r * step
    cells = np.array([h3.str_to_int(h3.latlng_to_cell(la, lo, res))
                      for lo, la in zip(lon, lat, strict=True)], dtype=np.uint64)  # fmt: skip
    when = np.full(n, np.datetime64(time, "us") if time else np.datetime64("NaT", "us"))
    labels = np.where(np.arange(n) % 5 == 4, NO_LABEL, np.arange(n) % 4).astype(np.int16)
    return EmbeddingSet(normalise(rng.standard_normal((n, dim))), cells, lon, lat, when,
                        np.full(n, source, dtype=object), (r * 64).astype(np.int32),
                        (c * 64).astype(np.int32), labels)  # fmt: skip


def per_cell_exact(es: EmbeddingSet, query: np.ndarray, exclude_cell: int, k: int
                   ) -> list[tuple[int, float]]:  # fmt: skip
    """(cell, best cosine) of the k best cells other than `exclude_cell`, by numpy."""
    scores = es.vectors.astype(np.float64) @ query.astype(np.float64)
    best: dict[int, float] = {}
    for cell, s in zip(es.cells.tolist(), scores.tolist(), strict=True):
        if cell != exclude_cell and s > best.get(cell, -np.inf):
            best[cell] = s
    return sorted(best.items(), key=lambda cs: (-cs[1], cs[0]))[:k]
