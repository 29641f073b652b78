"""StreamConfig: importable without the engine, and its checks agree with the engine."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from ocog_lib.errors import InputError
from ocog_lib.stream.config import StreamConfig


def test_importing_the_config_loads_neither_torch_nor_rasterio():
    code = ("import sys; import ocog_lib.stream.config; "
            "print(sorted(m for m in ('torch', 'rasterio') if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _numeric_dtypes() -> list[np.dtype]:
    return sorted({np.dtype(t) for t in set(np.sctypeDict.values()) if np.dtype(t).kind in "biufc"},
                  key=str)  # fmt: skip


@pytest.mark.parametrize("dtype", _numeric_dtypes(), ids=str)
def test_a_dtype_is_accepted_exactly_when_a_batch_can_be_allocated_in_it(dtype):
    """The config checks dtypes without torch; the engine allocates its batch tensor in them."""
    from ocog_lib.stream.dataset import _torch_dtype

    try:
        _torch_dtype(dtype)
        allocatable = dtype.kind != "c"  # complex: torch can, the engine's sources cannot
    except TypeError:
        allocatable = False
    try:
        StreamConfig(dtype=dtype.name)
        accepted = True
    except InputError:
        accepted = False
    assert accepted == allocatable


def _raster(remote: bool, tile: int = 512) -> SimpleNamespace:
    return SimpleNamespace(remote=remote, tile_height=tile, tile_width=tile,
                           tile_bytes=tile * tile * 4 * 2)  # fmt: skip


def test_resolving_twice_changes_nothing():
    """Training resolves once and hands the result to every stream it builds."""
    rasters = [_raster(True), _raster(True, 256)]
    for sampler in ("random", "block", "grid"):
        cfg = StreamConfig(sampler=sampler, cache_mb=8).resolved(rasters, rasters)
        assert cfg.resolved(rasters, rasters) == cfg
        assert cfg.patches_per_tile > 1 or sampler == "grid"
    local = StreamConfig().resolved([_raster(False)])
    assert (local.patches_per_tile, local.shuffle_tiles) == (1, 16)
