"""The cube as assets: one period's composite per area (`virtual_cubes`, a reduced COG with
a preview) and the tile benchmark (`tile_benchmarks`, rows in DuckDB).

The sample stacks are built under $OCOG_DATA_DIR/timestack/<area> on first use and reused
as they are afterwards (as `ocog sample timestack` left them, or `ocog bench tiles`).
"""

from dataclasses import asdict, replace
from pathlib import Path

import dagster as dg

from ocog_assets.defs.common import owners
from ocog_assets.defs.common.metadata import (
    data_path,
    nbytes,
    number,
    table_definition,
    table_written,
)
from ocog_assets.defs.common.pools import BENCHMARK_POOL
from ocog_assets.defs.common.resources import OcogPaths, ResultsStore
from ocog_assets.defs.cubes.partitions import S2_AREA, area_and_period, area_period, period_bounds
from ocog_lib.cube.stack import SceneStack
from ocog_lib.settings import Settings

NDVI = "(nir-red)/(nir+red)"


class VirtualCubeConfig(dg.Config):
    """The composite: band math, reducer and box (None: the stack's whole extent, lon/lat
    unless bbox_crs says otherwise), and the preview's colours (rescale None: 2..98 %)."""

    expression: str = NDVI
    reducer: str = "median"
    p: float | None = None
    max_cloud: float | None = None
    bbox: list[float] | None = None
    bbox_crs: str = "EPSG:4326"
    resolution: float | None = None
    resampling: str = "nearest"
    colormap: str = "rdylgn"
    rescale: list[float] | None = None


def area_stack(area: str, settings: Settings) -> SceneStack:
    """The area's sample stack: built on first use, then loaded as it is."""
    from ocog_lib.data.timestack import build_landsat_stack, build_time_stack

    folder = settings.data_dir / "timestack" / area
    if not (folder / "stack.json").exists():
        (build_time_stack if area == S2_AREA else build_landsat_stack)(folder)
    return SceneStack.load(folder)


def cube_path(settings: Settings, area: str, period: str) -> Path:
    return settings.data_dir / "cubes" / area / f"{period}.tif"


@dg.asset(
    partitions_def=area_period,
    group_name="cubes",
    owners=owners.DATA,
    kinds={"geotiff", "numpy"},
    description="One period's composite of an area's time stack: the expression per scene, "
    "cloud-masked, reduced over the period, as a float32 COG (NaN nodata) under "
    "data/cubes/<area>/<period>.tif, with a preview in the metadata.",
)
def virtual_cubes(context: dg.AssetExecutionContext, config: VirtualCubeConfig,
                  paths: OcogPaths) -> dg.MaterializeResult:  # fmt: skip
    from ocog_lib.cube.composite import CompositeSpec, write_composite

    area, period = area_and_period(context)
    settings = paths.settings()
    start, end = period_bounds(period)
    spec = CompositeSpec(
        config.expression, config.reducer, start, end, p=config.p,
        bbox=tuple(config.bbox) if config.bbox is not None else None,
        bbox_crs=config.bbox_crs, resolution=config.resolution, max_cloud=config.max_cloud,
        resampling=config.resampling, colormap=config.colormap,
        rescale=tuple(config.rescale) if config.rescale is not None else None,
    )  # fmt: skip
    out = write_composite(area_stack(area, settings), spec, cube_path(settings, area, period))
    context.log.info(f"{area}|{period}: {len(out.scenes)} scene(s), {out.shape[1]} x "
                     f"{out.shape[0]} px, {out.valid_fraction:.1%} valid -> {out.path}")
    return dg.MaterializeResult(metadata=_cube_metadata(out, spec))


def _cube_metadata(out, spec) -> dict:
    from ocog_lib.search.plots import png_markdown

    lo, hi = out.stretch
    caption = f"{spec.expression}, {spec.reducer}, {spec.start}..{spec.end}"
    preview = (f"{png_markdown(out.preview_png, caption)}\n\n"
               f"{spec.colormap}: {lo:.4g} (low) .. {hi:.4g} (high); transparent: no value")
    return {
        **data_path(out.path),
        "cog_path": dg.MetadataValue.path(str(out.path)),
        "preview": dg.MetadataValue.md(preview),
        "expression": spec.expression,
        "reducer": spec.reducer if spec.p is None else f"{spec.reducer} p={spec.p:g}",
        "start": spec.start,
        "end": spec.end,
        "scenes": dg.MetadataValue.json(list(out.scenes)),
        "scene_count": dg.MetadataValue.int(len(out.scenes)),
        "valid_fraction": dg.MetadataValue.float(out.valid_fraction),
        "shape": dg.MetadataValue.json(list(out.shape)),
        **nbytes("bytes", out.bytes),
        "compute_ms": number(out.compute_ms, "ms"),
        "write_ms": number(out.write_ms, "ms"),
        "crs": out.crs,
        "bbox": dg.MetadataValue.json(list(out.bbox)),
        "resolution": dg.MetadataValue.float(out.resolution),
    }


class TileBenchmarksConfig(dg.Config):
    """`ocog bench tiles`'s settings; a field left unset takes the library's default."""

    stack: str | None = None  # None: the sample's derived stack (timestack/sample-s2)
    zooms: list[int] | None = None
    tiles: int | None = None
    repeats: int | None = None
    expression: str | None = None
    reducer: str | None = None
    resampling: str | None = None
    resamplings: list[str] | None = None  # one set of rows each, e.g. nearest and bilinear


@dg.asset(
    pool=BENCHMARK_POOL,
    group_name="cubes",
    owners=owners.BENCHMARKS,
    metadata=table_definition("tile_benchmarks"),
    kinds={"duckdb"},
    description="XYZ tiles of the sample time stack: ocog's cube against rio-tiler, the same "
    "tiles, expression, mask and reducer, cold and warm; rows appended to the DuckDB table "
    "tile_benchmarks.",
)
def tile_benchmarks(context: dg.AssetExecutionContext, config: TileBenchmarksConfig,
                    paths: OcogPaths, results: ResultsStore) -> dg.MaterializeResult:  # fmt: skip
    from ocog_lib.bench.tiles import TileBenchConfig, compare_tiles, format_tiles, record_tiles

    given = {k: tuple(v) if isinstance(v, list) else v
             for k, v in config.model_dump().items() if v is not None}
    settings = replace(paths.settings(), results_db=results.db_path)
    result = compare_tiles(TileBenchConfig(**given), settings, progress=context.log.info)
    written = record_tiles(result, settings)
    _, total = results.query("SELECT count(*) FROM tile_benchmarks")
    rows = [asdict(r) for r in result.rows]
    columns = list(rows[0]) if rows else []
    return dg.MaterializeResult(metadata={
        "run_id": result.run_id,
        "content_hash": result.content_hash or "",
        "side_by_side": dg.MetadataValue.md(f"```\n{format_tiles(result)}\n```"),
        "rows": dg.MetadataValue.table(
            records=[dg.TableRecord({k: _cell(v) for k, v in r.items()}) for r in rows],
            schema=dg.TableSchema(columns=[dg.TableColumn(c, _kind(rows, c)) for c in columns])),
        "rows_written": dg.MetadataValue.int(written),
        **table_written("tile_benchmarks", results.db_path, row_count=total[0][0]),
    })  # fmt: skip


def _kind(rows: list[dict], column: str) -> str:
    values = [r[column] for r in rows if r[column] is not None]
    if values and all(isinstance(v, bool) for v in values):
        return "bool"
    return "number" if values and all(isinstance(v, int | float) for v in values) else "string"


def _cell(v):
    return round(v, 3) if isinstance(v, float) else v
