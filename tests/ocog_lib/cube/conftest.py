"""Small dated COGs for the cube's tests: real Sentinel-2 pixels, UTM 18N, 512 px, 10 m.

`cube_stack` is a three-scene stack (B04, B08 at 10 m and an SCL at 20 m per scene) whose
SCL makes a block cloudy in every scene (CLOUD_ALL) and another in the middle scene only
(CLOUD_ONE); scene 0 has a nodata hole (HOLE, all bands 0).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from affine import Affine

from tests.support.rasters import real_pixels, write_raster

CRS = "EPSG:32618"
TRANSFORM = Affine(10, 0, 500000, 0, -10, 4000000)  # about 36.1 N, 75 W
SIZE = 512
DATES = ("2024-01-15T10:30:00Z", "2024-03-15T10:30:00Z", "2024-05-15T10:30:00Z")
# (rows, cols) blocks of the 10 m grid
HOLE = (slice(40, 60), slice(100, 180))
CLOUD_ALL = (slice(200, 280), slice(200, 280))
CLOUD_ONE = (slice(300, 380), slice(40, 120))
CLEAR = (90, 420)  # a (row, col) no mask or hole touches


def lonlat(row: float, col: float) -> tuple[float, float]:
    """WGS84 of a pixel centre of the 10 m grid."""
    from rasterio.warp import transform

    x, y = TRANSFORM * (col + 0.5, row + 0.5)
    (lon,), (lat,) = transform(CRS, "EPSG:4326", [x], [y])
    return lon, lat


LON, LAT = lonlat(*CLEAR)


def write_cog(path: Path, arr: np.ndarray, *, transform: Affine = TRANSFORM,
              nodata: float | None = 0, blocksize: int = 128, overviews: bool = True,
              resampling: str = "NEAREST", compress: str = "DEFLATE",
              predictor: int = 2) -> Path:  # fmt: skip
    """`arr` (bands, h, w) as a COG (GDAL's COG driver), overviews down to one block."""
    return write_raster(path, arr, crs=CRS, transform=transform, nodata=nodata,
                        BLOCKSIZE=blocksize, COMPRESS=compress, PREDICTOR=predictor,
                        OVERVIEWS="AUTO" if overviews else "NONE", RESAMPLING=resampling)


def write_tiff(path: Path, arr: np.ndarray, *, nodata: float | None = 0, overviews=(2, 4),
               **opts) -> Path:  # fmt: skip
    """A plain GeoTIFF (any layout GDAL writes: opts such as TILED, INTERLEAVE) with
    internal overviews."""
    bands, h, w = arr.shape
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=bands,
                       dtype=arr.dtype, crs=CRS, transform=TRANSFORM, nodata=nodata,
                       **opts) as ds:  # fmt: skip
        ds.write(arr)
        if overviews:
            ds.build_overviews(list(overviews), rasterio.enums.Resampling.nearest)
    return path


def bands_of(scene: int) -> np.ndarray:
    """(2, 512, 512) uint16 red and nir of a scene: real pixels, 0 = nodata."""
    arr = real_pixels(2, SIZE, SIZE, "uint16", seed=scene + 1)
    arr[arr == 0] = 1
    if scene == 0:
        arr[:, HOLE[0], HOLE[1]] = 0
    return arr


def scl_of(scene: int) -> np.ndarray:
    """(1, 256, 256) uint8 SCL at 20 m: vegetation, clouds in the blocks above."""
    scl = np.full((SIZE, SIZE), 4, np.uint8)
    scl[CLOUD_ALL] = (8, 9, 3)[scene]
    if scene == 1:
        scl[CLOUD_ONE] = 10
    return scl[::2, ::2][None].copy()


@dataclass(frozen=True)
class CubeFiles:
    folder: Path
    red: list[Path]
    nir: list[Path]
    scl: list[Path]


def build_stack(folder: Path) -> CubeFiles:
    folder.mkdir(parents=True, exist_ok=True)
    scenes, red, nir, scl = [], [], [], []
    for i, when in enumerate(DATES):
        sid = f"s{i}"
        (folder / sid).mkdir(exist_ok=True)
        arr = bands_of(i)
        red.append(write_cog(folder / sid / "B04.tif", arr[:1]))
        nir.append(write_cog(folder / sid / "B08.tif", arr[1:]))
        scl.append(write_cog(folder / sid / "SCL.tif", scl_of(i),
                             transform=TRANSFORM * Affine.scale(2)))  # fmt: skip
        scenes.append({"id": sid, "datetime": when, "cloud_cover": [5.0, 60.0, 20.0][i],
                       "assets": {"B04": f"{sid}/B04.tif", "B08": f"{sid}/B08.tif",
                                  "SCL": f"{sid}/SCL.tif"}})  # fmt: skip
    doc = {"name": "test", "bands": ["B04", "B08"], "aliases": {"red": "B04", "nir": "B08"},
           "mask": {"kind": "scl", "asset": "SCL"}, "scenes": scenes}  # fmt: skip
    (folder / "stack.json").write_text(json.dumps(doc))
    return CubeFiles(folder, red, nir, scl)


@pytest.fixture(scope="session")
def cube_files(tmp_path_factory: pytest.TempPathFactory) -> CubeFiles:
    """The three-scene stack on disk (read-only)."""
    return build_stack(tmp_path_factory.mktemp("cube_stack"))
