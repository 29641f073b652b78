"""What the trained encoder must beat: two embeddings that learn nothing.

Both take the same normalised patches the encoder sees (per band, with the training
windows' statistics), so the comparison is of representations, not of input scaling.

- `random_projection`: the patch's pixels (C x p x p) times a seeded Gaussian matrix to
  `dim` values (Johnson-Lindenstrauss: roughly keeps distances between raw patches).
- `band_stats`: per-band mean and standard deviation (2C values): the spectrum and
  texture summary a band-math retrieval would use.
Each L2-normalised, so cosine search compares them like the encoder's vectors.
"""

from __future__ import annotations

import numpy as np

from ocog_lib.embed.vectors import normalise

BASELINES = ("random_projection", "band_stats")


def random_projection(patches: np.ndarray, dim: int, seed: int = 0) -> np.ndarray:
    """float32 (n, dim) unit vectors: flattened patches times a seeded N(0, 1/dim) matrix."""
    x = np.asarray(patches, dtype=np.float32).reshape(len(patches), -1)
    rng = np.random.default_rng(seed)
    proj = rng.standard_normal((x.shape[1], dim), dtype=np.float32) / np.float32(np.sqrt(dim))
    return normalise(x @ proj)


def band_stats(patches: np.ndarray) -> np.ndarray:
    """float32 (n, 2C) unit vectors: each band's mean, then each band's std."""
    x = np.asarray(patches, dtype=np.float64).reshape(*np.shape(patches)[:2], -1)
    return normalise(np.concatenate([x.mean(2), x.std(2)], axis=1))
