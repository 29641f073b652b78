"""Preparing a benchmark (Vaihingen, Potsdam, DFC-22) from the archives under its raw folder:
the one use-case behind `ocog data prepare` and the `prepared_datasets` asset, so both
read the same folder, take the same options and fail with the same advice."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ocog_lib.data.prepare import PreparedDataset
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings

BENCHMARKS = ("vaihingen", "potsdam", "dfc22")


@dataclass(frozen=True)
class BenchmarkOptions:
    """How a benchmark is cut; each preparer takes the options that apply to it."""

    eroded: bool = False  # vaihingen/potsdam: eroded ground truth (boundaries ignored)
    imagery: str | None = None  # potsdam: RGBIR, RGB or IRRG; None = the first found
    crs: str | None = None  # vaihingen/potsdam: CRS of world files without a .prj
    limit: int | None = None  # at most this many items; None = all


def prepare_benchmark(settings: Settings, dataset: str,
                      options: BenchmarkOptions = BenchmarkOptions(),
                      progress: Callable[[str], None] | None = None) -> PreparedDataset:
    """Prepare `dataset` from settings.raw_dir(dataset) into settings.prepared_dir(dataset);
    a missing raw folder says where to get the data."""
    from ocog_lib.data.external import how_to_obtain

    if dataset not in BENCHMARKS:
        raise InputError(f"dataset {dataset!r}", f"no preparer; valid: {', '.join(BENCHMARKS)}")
    raw, out = settings.raw_dir(dataset), settings.prepared_dir(dataset)
    if not raw.exists():
        raise InputError(raw, f"no raw data for {dataset}: {how_to_obtain(dataset, raw)}")
    if dataset == "vaihingen":
        from ocog_lib.data.vaihingen import VaihingenConfig, prepare_vaihingen

        isprs = VaihingenConfig(eroded=options.eroded, crs=options.crs, limit=options.limit)
        return prepare_vaihingen(raw, out, isprs, progress)
    if dataset == "potsdam":
        from ocog_lib.data.potsdam import PotsdamConfig, prepare_potsdam

        potsdam = PotsdamConfig(imagery=options.imagery, eroded=options.eroded, crs=options.crs,
                                limit=options.limit)
        return prepare_potsdam(raw, out, potsdam, progress)
    from ocog_lib.data.dfc22 import Dfc22Config, prepare_dfc22

    return prepare_dfc22(raw, out, Dfc22Config(limit=options.limit), progress)
