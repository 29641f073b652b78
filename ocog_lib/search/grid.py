"""Grids: every var1 x var2 cell (like the OCOG toolkit's grid_search), each measured
`repeats` times interleaved; mean and std of samples/s per cell land in `grid_cells`."""

from __future__ import annotations

import os
import statistics
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ocog_lib.errors import InputError, OcogError
from ocog_lib.search.files import RemoteOptions, VariantFiles, trial_files
from ocog_lib.search.measure import measure_config
from ocog_lib.search.space import (
    CODECS,
    NAMED_BASELINES,
    Progress,
    SearchSpace,
    TrialConfig,
    decoded_mb,
    on_variant,
)
from ocog_lib.settings import Settings

GRID_VARS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "compression": ("codec", str.lower),
    "codec": ("codec", str.lower),
    "level": ("level", lambda v: None if v.lower() in ("none", "") else int(v)),
    "predictor": ("predictor", int),
    "block_size": ("block_size", int),
    "blocksize": ("block_size", int),
    "sampler": ("sampler", str),
    "patch_size": ("patch_size", int),
    "batch_size": ("batch_size", int),
    "workers": ("workers", int),
    "threads": ("threads", int),
    "prefetch": ("prefetch", int),
    "cache_mb": ("cache_mb", float),
    "patches_per_tile": ("patches_per_tile", int),
    "io_threads": ("io_threads", int),
    "variant": ("variant", str),
}
GRID_DEFAULTS: dict[str, tuple[str, ...]] = {
    "codec": CODECS,
    "level": ("1", "6", "9"),
    "predictor": ("1", "2"),
    "block_size": ("128", "256", "512", "1024"),
    "sampler": ("random", "block"),
    "patch_size": ("128", "256", "512"),
    "batch_size": ("16", "32", "64"),
    "workers": ("0", "1", "2"),
    "threads": ("1", "2", "4"),
    "prefetch": ("1", "2", "4", "8"),
    "cache_mb": ("32", "128", "512"),
    "patches_per_tile": ("1", "4", "8", "16"),
    "io_threads": ("8", "32", "128"),
    "variant": NAMED_BASELINES,
}


@dataclass
class GridCell:
    value1: str
    value2: str
    config: dict[str, Any]
    samples_per_s: list[float] = field(default_factory=list)
    mb_per_s: list[float] = field(default_factory=list)
    reason: str | None = None  # why the cell has no measurement
    content_hash: str | None = None  # of the variant it streamed (data.lineage)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.samples_per_s) if self.samples_per_s else None

    @property
    def std(self) -> float | None:
        return statistics.pstdev(self.samples_per_s) if self.samples_per_s else None


@dataclass
class GridResult:
    grid_id: str
    dataset: str
    storage: str
    var1: str
    var2: str
    values1: list[str]
    values2: list[str]
    repeats: int
    cells: list[GridCell]
    plots: dict[str, str] = field(default_factory=dict)

    @property
    def best(self) -> GridCell | None:
        done = [c for c in self.cells if c.mean is not None]
        return max(done, key=lambda c: c.mean) if done else None


def grid_var(name: str) -> str:
    """The TrialConfig field a grid variable sets (aliases as the OCOG toolkit names them)."""
    if name not in GRID_VARS:
        raise InputError(f"grid variable '{name}'", f"choose one of {', '.join(GRID_VARS)}")
    return GRID_VARS[name][0]


def _grid_value(var: str, raw: str) -> Any:
    try:
        return GRID_VARS[var][1](str(raw).strip())
    except ValueError as exc:
        raise InputError(f"{var}={raw!r}", f"not a valid value ({exc})") from None



def run_grid(
    dataset: str,
    storage: str,
    var1: str,
    values1: list[str] | tuple[str, ...] | None,
    var2: str,
    values2: list[str] | tuple[str, ...] | None,
    repeats: int,
    settings: Settings | None = None,
    *,
    seconds: float = 2.0,
    warmup_seconds: float = 0.5,
    base: TrialConfig | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    remote: RemoteOptions | None = None,
) -> GridResult:
    """Every var1 x var2 cell, `repeats` times interleaved; mean and std per cell to DuckDB."""
    settings = settings or Settings.from_env()
    f1, f2 = grid_var(var1), grid_var(var2)
    if f1 == f2:
        raise InputError(f"grid {var1} x {var2}", "the two variables must differ")
    if repeats < 1:
        raise InputError(f"repeats {repeats}", "must be at least 1")
    v1 = [str(v) for v in (values1 or GRID_DEFAULTS[f1])]
    v2 = [str(v) for v in (values2 or GRID_DEFAULTS[f2])]
    if base is None:  # the cache capped at a quarter of the data, as in the search
        cap = SearchSpace(cache_mb=(128, 128)).fit_cache(decoded_mb(dataset, settings)).cache_mb
        base = TrialConfig(threads=os.cpu_count() or 1, cache_mb=float(cap[1]))
    cells = [_cell(dataset, storage, settings, base, (var1, a), (var2, b)) for a in v1 for b in v2]
    result = GridResult(uuid.uuid4().hex[:12], dataset, storage, var1, var2, v1, v2, repeats,
                        cells)  # fmt: skip
    with trial_files(dataset, storage, settings, remote) as files:
        _measure_cells(result, files, seconds, warmup_seconds, seed, progress or _quiet)
    _write_cells(result, settings, seconds, warmup_seconds)
    return result


def _quiet(_done: int, _total: int, _message: str) -> None:
    pass


def _cell(dataset: str, storage: str, settings: Settings, base: TrialConfig,
          at1: tuple[str, str], at2: tuple[str, str]) -> GridCell:  # fmt: skip
    """The cell at (var1, value1) x (var2, value2); one a config cannot take says why."""
    (var1, a), (var2, b) = at1, at2
    cfg = replace(base, **{grid_var(var1): _grid_value(var1, a),
                           grid_var(var2): _grid_value(var2, b)})  # fmt: skip
    if storage == "remote" and cfg.io_threads < 0:
        cfg = replace(cfg, io_threads=32)
    if cfg.variant:
        cfg = on_variant(cfg, dataset, cfg.variant, settings)
    try:
        return GridCell(a, b, cfg.normalized().as_dict())
    except InputError as exc:  # e.g. a level the codec does not take
        return GridCell(a, b, asdict(cfg), reason=str(exc))


def _measure_cells(result: GridResult, files: VariantFiles, seconds: float,
                   warmup_seconds: float, seed: int, say: Progress) -> None:  # fmt: skip
    """Each repeat runs every cell once (interleaved: drift hits all cells alike)."""
    total = len(result.cells) * result.repeats
    done = 0
    for r in range(result.repeats):
        for cell in result.cells:
            if cell.reason:
                continue
            cfg = _config_from_dict(cell.config)
            try:
                m = measure_config(files, cfg, seconds=seconds, warmup_seconds=warmup_seconds,
                                   seed=seed)  # fmt: skip
                cell.samples_per_s.append(m.samples_per_s)
                cell.mb_per_s.append(m.mb_per_s)
                cell.content_hash = files.content_hash(cfg)
            except (InputError, OcogError) as exc:
                cell.reason = str(exc)
            done += 1
            got = f" {cell.samples_per_s[-1]:.0f} samples/s" if cell.samples_per_s else " skipped"
            say(done, total, f"repeat {r + 1}/{result.repeats}: {result.var1}={cell.value1} "
                f"{result.var2}={cell.value2}{got}")  # fmt: skip


def _write_cells(result: GridResult, settings: Settings, seconds: float,
                 warmup_seconds: float) -> None:  # fmt: skip
    from ocog_lib.results import write_rows

    write_rows(settings.results_db, "grid_cells", [
        {
            "grid_id": result.grid_id, "dataset": result.dataset, "storage": result.storage,
            "var1": result.var1, "value1": c.value1, "var2": result.var2, "value2": c.value2,
            "repeats": len(c.samples_per_s), "mean_samples_per_s": c.mean,
            "std_samples_per_s": c.std, "content_hash": c.content_hash,
            "mean_mb_per_s": statistics.fmean(c.mb_per_s) if c.mb_per_s else None,
            "config": {**c.config, "samples_per_s": c.samples_per_s, "reason": c.reason,
                       "seconds": seconds, "warmup_seconds": warmup_seconds},
        }
        for c in result.cells
    ])  # fmt: skip


def _config_from_dict(d: dict[str, Any]) -> TrialConfig:
    names = {f.name for f in fields(TrialConfig)}
    cfg = TrialConfig(**{k: v for k, v in d.items() if k in names})
    return cfg if d.get("profile") is None else replace(cfg, variant=None)
