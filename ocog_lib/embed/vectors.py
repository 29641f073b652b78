"""`EmbeddingSet`: the one in-memory form of embedded patches, between inference, the
DuckDB store, the GeoParquet export and the search indexes.

Row i is one patch: its unit-length vector, the H3 cell (as the uint64 index h3 uses) of
its centre, that centre in lon/lat, the scene's time, the source raster, the window's
top-left (row, col) in it, and a label (the patch's majority class; -1 where unknown).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ocog_lib.errors import InputError

NO_LABEL = -1
UNIT_TOLERANCE = 1e-3  # |‖v‖ - 1| above this is not an embedding


@dataclass(frozen=True)
class EmbeddingSet:
    vectors: np.ndarray  # float32 (n, dim), L2-normalised
    cells: np.ndarray  # uint64 (n,): H3 cell of each patch's centre
    lon: np.ndarray  # float64 (n,)
    lat: np.ndarray  # float64 (n,)
    time: np.ndarray  # datetime64[us] (n,): the scene's acquisition time (NaT: unknown)
    source: np.ndarray  # object (n,): the source raster's name (path relative to its dataset)
    row: np.ndarray  # int32 (n,): window top-left in the source raster
    col: np.ndarray  # int32 (n,)
    labels: np.ndarray  # int16 (n,): majority class, NO_LABEL where unknown

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or self.vectors.dtype != np.float32:
            raise InputError("embeddings", f"vectors must be float32 (n, dim), got "
                             f"{self.vectors.dtype} {self.vectors.shape}")  # fmt: skip
        n = len(self.vectors)
        for name in ("cells", "lon", "lat", "time", "source", "row", "col", "labels"):
            if len(getattr(self, name)) != n:
                raise InputError(f"embeddings.{name}", f"has {len(getattr(self, name))} rows, "
                                 f"the vectors {n}")  # fmt: skip

    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def not_unit(self) -> np.ndarray:
        """Indices of rows whose vector is not unit length (the asset check's finding)."""
        norms = np.linalg.norm(self.vectors.astype(np.float64), axis=1)
        return np.flatnonzero(np.abs(norms - 1.0) > UNIT_TOLERANCE)

    def take(self, index: np.ndarray) -> EmbeddingSet:
        return EmbeddingSet(*(getattr(self, f)[index] for f in _FIELDS))

    @staticmethod
    def concat(parts: list[EmbeddingSet]) -> EmbeddingSet:
        if not parts:
            raise InputError("embeddings", "nothing to concatenate")
        return EmbeddingSet(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))


_FIELDS = ("vectors", "cells", "lon", "lat", "time", "source", "row", "col", "labels")


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, float32; a zero row stays zero (and fails `not_unit`)."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)
