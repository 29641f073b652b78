"""One package of the tiny sample per session (scenes and bench scenes, 128 px patches)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from ocog_lib.hdf5.export import ExportConfig, ExportResult, export_hdf5, scenes_from_manifest

ROLES = ("scene", "bench")
CONFIG = ExportConfig(patch_size=128, split_block=256, stats_samples=1000)


@dataclass(frozen=True)
class Package:
    result: ExportResult
    scenes: list  # SourceScene, in file order
    config: ExportConfig


def export_tiny(tiny_sample, output: Path, config: ExportConfig = CONFIG, **kw) -> ExportResult:
    m = tiny_sample.manifest
    return export_hdf5(
        scenes_from_manifest(m, ROLES), output, config, dataset=m.dataset, classes=m.classes,
        ignore_index=m.ignore_index, **kw,
    )


@pytest.fixture(scope="session")
def package(tiny_sample, tmp_path_factory) -> Package:
    """Read-only: copy it before changing anything."""
    out = tmp_path_factory.mktemp("hdf5") / "data_tiny.h5"
    result = export_tiny(tiny_sample, out)
    return Package(result, scenes_from_manifest(tiny_sample.manifest, ROLES), CONFIG)


def cog_window(path: str, row: int, col: int, size: int) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(window=Window(col, row, size, size))
