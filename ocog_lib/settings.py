"""Where ocog keeps its files: every path can be moved by an environment variable."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ocog_lib.errors import InputError

DEFAULT_BENCH_SIZE = 8192


def bench_size_from_env() -> int:
    """Benchmark scene edge in pixels: $OCOG_BENCH_SIZE (tests and demos on small data)."""
    raw = os.environ.get("OCOG_BENCH_SIZE", "")
    if not raw:
        return DEFAULT_BENCH_SIZE
    try:
        size = int(raw)
    except ValueError:
        size = 0
    if size <= 0:
        raise InputError("OCOG_BENCH_SIZE", f"{raw!r} is not a positive integer")
    return size


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

    def raw_scene_path(self, tile_id: str) -> Path:
        """Where `raw_scenes[tile]` lives: one GeoTIFF per sensor tile."""
        return self.raw_dir("tiles") / f"{tile_id}.tif"

    def prepared_dir(self, dataset: str) -> Path:
        """A prepared dataset: images, masks and its manifest.json."""
        return self.data_dir / "prepared" / dataset

    def variant_dir(self, dataset: str, variant: str) -> Path:
        """COG variants of one prepared dataset under one profile."""
        return self.data_dir / "variants" / dataset / variant
