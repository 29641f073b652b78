"""The tiles benchmark's loaders: ocog's cube and rio-tiler, each a callable `(z, x, y) ->
(float32 tile, stored bytes fetched)`, plus the per-band reads its correctness check compares.

rio-tiler is read the way a TiTiler user reads a stack: a `Reader` per scene and asset, the
same expression (`b1, b2, ...`), the same SCL/BQA mask, numpy's nan-reducer over time. Its
bytes are not visible to Python: remotely the shaper counts them (wire bytes), locally
they are reported as None. Remote, GDAL gets the settings TiTiler recommends for COGs
(`RIO_REMOTE_ENV`) and its /vsicurl/ cache is emptied before a cold pass
(`clear_gdal_http_cache`), or that pass would read what the last one left.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from ocog_lib.cube import masks
from ocog_lib.cube.expression import Expression
from ocog_lib.cube.stack import SceneStack
from ocog_lib.errors import InputError

NP_REDUCERS = {"median": np.nanmedian, "mean": np.nanmean, "min": np.nanmin,
               "max": np.nanmax, "std": np.nanstd, "var": np.nanvar, "sum": np.nansum}  # fmt: skip
# TiTiler's advice for COGs over HTTP: no directory listing per open, merged ranges
RIO_REMOTE_ENV = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
                  "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
                  "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff"}  # fmt: skip


class OcogTiles:
    """`cube.reads.read_tile`; `reset()`: a fresh engine (empty decoded-tile and header
    caches), what a new process starts with."""

    def __init__(self, stack: SceneStack, expr: Expression, reducer: str, tms: str,
                 size: int, resampling: str):  # fmt: skip
        self.stack, self.expr, self.reducer = stack, expr, reducer
        self.tms, self.size, self.resampling = tms, size, resampling
        self.reset()

    def reset(self) -> None:
        from ocog_lib.cube import sources

        sources.engine(sources.DEFAULT_CACHE_BYTES)

    def __call__(self, z: int, x: int, y: int) -> tuple[np.ndarray, int]:
        from ocog_lib.cube.reads import read_tile

        t = read_tile(self.stack, z, x, y, expression=self.expr, reducer=self.reducer,
                      tms=self.tms, size=self.size, resampling=self.resampling)  # fmt: skip
        return t.data, t.bytes_fetched

    def close(self) -> None:
        pass


class RioTilerTiles:
    """rio-tiler per scene and asset, Readers kept open; `reset()`: close them (new
    datasets, empty block caches) and empty GDAL's /vsicurl/ cache."""

    def __init__(self, stack: SceneStack, expr: Expression, reducer: str, tms: str,
                 size: int, resampling: str):  # fmt: skip
        self.stack, self.reducer, self.size, self.resampling = stack, reducer, size, resampling
        self.tms = _tms(tms)
        self.bands = list(expr.bands)
        self.text = rio_expression(expr.text, self.bands, stack.aliases)
        self.readers: dict = {}

    def _reader(self, uri: str):
        from rio_tiler.io import Reader

        if uri not in self.readers:
            self.readers[uri] = Reader(uri, tms=self.tms)
        return self.readers[uri]

    def band(self, scene, asset: str, z: int, x: int, y: int, resampling: str):
        """rio-tiler's masked array (1, size, size) of one scene's asset (band 1)."""
        return self._reader(self.stack.uri(scene, asset)).tile(
            x, y, z, tilesize=self.size, indexes=1, resampling_method=resampling).array

    def __call__(self, z: int, x: int, y: int) -> tuple[np.ndarray, int]:
        layers = [layer for scene in self.stack.scenes
                  if (layer := self._scene(scene, z, x, y)) is not None]  # fmt: skip
        if not layers:
            raise InputError(f"tile {z}/{x}/{y}", "rio-tiler: outside every scene")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels stay NaN
            data = NP_REDUCERS[self.reducer](np.stack(layers), axis=0)
        return data.astype(np.float32), 0

    def _scene(self, scene, z, x, y) -> np.ndarray | None:
        from rio_tiler.errors import TileOutsideBounds
        from rio_tiler.models import ImageData

        from ocog_lib.cube.reads import scaled

        try:
            arrays = [self.band(scene, b, z, x, y, self.resampling) for b in self.bands]
            scl = (self.band(scene, self.stack.mask_asset, z, x, y, "nearest").data[0]
                   if self.stack.mask_asset else None)  # fmt: skip
        except TileOutsideBounds:
            return None
        values = np.stack([scaled(scene, b, np.where(a.mask[0], np.nan, a.data[0])
                                  .astype(np.float32)) for b, a in zip(self.bands, arrays,
                                                                       strict=True)])  # fmt: skip
        if scl is not None:
            values[:, ~masks.keep(self.stack.mask_kind, scl)] = np.nan
        img = ImageData(np.ma.MaskedArray(values, mask=np.isnan(values)),
                        band_names=[f"b{i + 1}" for i in range(len(self.bands))])  # fmt: skip
        out = img.apply_expression(self.text).array
        return np.where(out.mask[0], np.nan, out.data[0]).astype(np.float32)

    def close(self) -> None:
        for reader in self.readers.values():
            reader.close()
        self.readers.clear()

    def reset(self) -> bool:
        """False when GDAL's HTTP cache could not be emptied."""
        self.close()
        return clear_gdal_http_cache()


LOADER_CLASSES = {"ocog": OcogTiles, "rio-tiler": RioTilerTiles}


@contextmanager
def rio_env(options: dict) -> Iterator[None]:
    """One `rasterio.Env` around rio-tiler's passes, as a tile server holds one per worker,
    with the AWS credentials of the environment moved into its `AWSSession`: while
    AWS_ACCESS_KEY_ID is in os.environ, rasterio builds a new boto3 session (50-80 ms here)
    for every Env it makes inside, one per warp of every band, which would be charged to
    rio-tiler. Same credentials, same endpoint (AWS_S3_ENDPOINT stays set)."""
    import rasterio
    from rasterio.session import AWSSession

    from ocog_lib.env import scoped_env

    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not (key and secret):
        with rasterio.Env(**options):
            yield
        return
    session = AWSSession(aws_access_key_id=key, aws_secret_access_key=secret,
                         aws_session_token=os.environ.get("AWS_SESSION_TOKEN"),
                         region_name=os.environ.get("AWS_REGION"))  # fmt: skip
    with rasterio.Env(session=session, **options), scoped_env(
        AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None, AWS_SESSION_TOKEN=None
    ):
        yield


def _tms(name: str):
    from ocog_lib.cube.reads import tile_matrix_set

    return tile_matrix_set(name)


def rio_expression(text: str, bands: list[str], aliases: dict[str, str]) -> str:
    """The expression with band names and aliases as rio-tiler's b1, b2, ... (`bands` order)."""
    index = {b: f"b{i + 1}" for i, b in enumerate(bands)}
    index.update({a: index[b] for a, b in aliases.items() if b in index})
    return re.sub(r"\b[A-Za-z_][A-Za-z0-9_]*\b", lambda m: index.get(m.group(), m.group()), text)


def band_dn_diff(stack: SceneStack, expr: Expression, tiles: list[tuple[int, int]], z: int,
                 tms: str, size: int, resampling: str) -> float:  # fmt: skip
    """The largest |ocog - rio-tiler| in DN over every scene's band (and mask) of `tiles`,
    read one by one before any expression (`cube.reads.read_raster` against rio-tiler's
    `Reader.tile`); NaN placement must match too (inf when it does not). This is what
    "within 1 DN" means for a float expression: its inputs agree to 1 DN."""
    from rio_tiler.errors import TileOutsideBounds

    from ocog_lib.cube.reads import read_raster, tile_view

    rio = RioTilerTiles(stack, expr, "median", tms, size, resampling)
    worst = 0.0
    try:
        for x, y in tiles:
            view = tile_view(tms, z, x, y, size)
            for scene in stack.scenes:
                for asset in [*expr.bands, *([stack.mask_asset] if stack.mask_asset else [])]:
                    kind = "nearest" if asset == stack.mask_asset else resampling
                    try:
                        ref = rio.band(scene, asset, z, x, y, kind)
                    except TileOutsideBounds:
                        continue
                    theirs = np.where(ref.mask[0], np.nan, ref.data[0]).astype(np.float32)
                    mine = read_raster(stack.uri(scene, asset), view, resampling=kind)
                    worst = max(worst, max_abs_diff(mine, theirs))
    finally:
        rio.close()
    return worst


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """The largest |a - b| where both are finite; inf when shapes or NaN placement differ."""
    if a.shape != b.shape or not np.array_equal(np.isnan(a), np.isnan(b)):
        return float("inf")
    finite = ~np.isnan(a)
    return float(np.max(np.abs(a[finite] - b[finite]))) if finite.any() else 0.0


def clear_gdal_http_cache() -> bool:
    """Empty GDAL's /vsicurl/ (and /vsis3/) cache of file sizes and blocks: what a new
    process would start with. rasterio does not expose VSICurlClearCache, so it is called
    in the libgdal this process loaded. False when that library cannot be found."""
    import ctypes

    import rasterio  # noqa: F401 - loads libgdal

    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            paths = {line.split()[-1] for line in f if "libgdal" in line and "/" in line}
    except OSError:
        return False
    for path in sorted(paths):
        try:
            fn = ctypes.CDLL(path).VSICurlClearCache
        except (OSError, AttributeError):
            continue
        fn.restype = None
        fn()
        return True
    return False
