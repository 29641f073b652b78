"""Where ocog keeps its files: every path can be moved by an environment variable."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    results_db: Path

    @classmethod
    def from_env(cls) -> Settings:
        data_dir = Path(os.environ.get("OCOG_DATA_DIR", "data")).resolve()
        results_db = Path(os.environ.get("OCOG_DUCKDB", str(data_dir / "ocog.duckdb"))).resolve()
        return cls(data_dir=data_dir, results_db=results_db)

    def raw_dir(self, dataset: str) -> Path:
        """Raw downloads / source scenes of a dataset (e.g. `raw_scenes` partitions)."""
        return self.data_dir / "raw" / dataset

    def prepared_dir(self, dataset: str) -> Path:
        """A prepared dataset: images, masks and its manifest.json."""
        return self.data_dir / "prepared" / dataset

    def variant_dir(self, dataset: str, variant: str) -> Path:
        """COG variants of one prepared dataset under one profile."""
        return self.data_dir / "variants" / dataset / variant
