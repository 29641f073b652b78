"""Raw scenes per sensor tile and prepared datasets: thin wrappers over ocog_lib.data."""

from pathlib import Path

import dagster as dg
from pydantic import Field

from ocog_lib.cli import bench_size_from_env, raw_scene_path
from ocog_lib.data.manifest import DatasetManifest
from ocog_lib.errors import InputError
from ocog_assets.partitions import datasets, sensor_tiles
from ocog_assets.resources import OcogPaths

# Datasets prepared from data a user downloads (licences forbid redistribution).
EXTERNAL_SOURCES = {
    "vaihingen": "ISPRS 2D Semantic Labeling benchmark, Vaihingen "
                 "(https://www.isprs.org/education/benchmarks/UrbanSemLab/)",
    "potsdam": "ISPRS 2D Semantic Labeling benchmark, Potsdam "
               "(https://www.isprs.org/education/benchmarks/UrbanSemLab/)",
    "dfc22": "IEEE GRSS Data Fusion Contest 2022 on IEEE DataPort "
             "(https://ieee-dataport.org/competitions/data-fusion-contest-2022-dfc2022)",
}


@dg.asset(
    partitions_def=sensor_tiles,
    group_name="data",
    kinds={"geotiff"},
    description="One 4-band uint16 GeoTIFF per sensor tile (MGRS id or Landsat path/row).",
)
def raw_scenes(context: dg.AssetExecutionContext, paths: OcogPaths) -> dg.MaterializeResult:
    from ocog_lib.data.sample import build_raw_scene, sample_tiles

    tile = context.partition_key
    known = sample_tiles()
    if tile not in known:
        raise InputError(f"sensor tile {tile!r}",
                         f"no source for this tile; the embedded sample has {known}")
    path = build_raw_scene(tile, raw_scene_path(paths.settings(), tile))
    return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(str(path)),
                                          **_raster_metadata(path)})


class PrepareConfig(dg.Config):
    """How the sample is cut; the benchmark scenes make the streaming workload."""

    bench_size: int = Field(0, description="benchmark scene edge in px; 0 = $OCOG_BENCH_SIZE "
                                           "or 8192")
    n_bench: int = Field(2, description="number of benchmark scenes")
    scene_size: int = Field(0, description="training scene edge in px; 0 = the raw scene")


@dg.asset(
    partitions_def=datasets,
    deps=[dg.AssetDep(raw_scenes, partition_mapping=dg.AllPartitionMapping())],
    group_name="data",
    kinds={"geotiff", "json"},
    description="Scenes, masks, benchmark scenes and manifest.json of one dataset.",
)
def prepared_datasets(context: dg.AssetExecutionContext, config: PrepareConfig,
                      paths: OcogPaths) -> dg.MaterializeResult:
    dataset = context.partition_key
    settings = paths.settings()
    out_dir = settings.prepared_dir(dataset)
    if dataset != "sample":
        raw = settings.raw_dir(dataset)
        if not raw.exists():
            raise InputError(raw, f"no raw data for {dataset}: download the "
                                  f"{EXTERNAL_SOURCES[dataset]} and unpack it there")
        raise InputError(raw, f"preparing {dataset} is not part of this version of ocog; "
                              "only the sample is prepared")

    from ocog_lib.data.sample import prepare_sample, sample_tiles

    raws = {tile: raw_scene_path(settings, tile) for tile in sample_tiles()}
    missing = [f"raw_scenes[{t}] ({p})" for t, p in raws.items() if not p.exists()]
    if missing:
        raise InputError("prepared_datasets[sample]", f"materialize {', '.join(missing)} first")
    manifest = prepare_sample(raws, out_dir, bench_size=config.bench_size or bench_size_from_env(),
                              n_bench=config.n_bench, scene_size=config.scene_size or None)
    return dg.MaterializeResult(metadata=_manifest_metadata(manifest, out_dir))


def _raster_metadata(path: Path) -> dict[str, dg.MetadataValue]:
    import rasterio

    with rasterio.open(path) as src:
        return {
            "bytes": dg.MetadataValue.int(path.stat().st_size),
            "width": dg.MetadataValue.int(src.width),
            "height": dg.MetadataValue.int(src.height),
            "bands": dg.MetadataValue.int(src.count),
            "dtype": dg.MetadataValue.text(src.dtypes[0]),
            "crs": dg.MetadataValue.text(str(src.crs)),
        }


def _manifest_metadata(manifest: DatasetManifest, out_dir: Path) -> dict[str, dg.MetadataValue]:
    items = dg.MetadataValue.table(
        records=[dg.TableRecord({"name": i.name, "role": i.role, "image": i.image,
                                 "mask": i.mask or "", "tile_id": i.tile_id})
                 for i in manifest.items],
        schema=dg.TableSchema(columns=[dg.TableColumn(c) for c in
                                       ("name", "role", "image", "mask", "tile_id")]),
    )
    nbytes = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
    return {
        "path": dg.MetadataValue.path(str(out_dir)),
        "scenes": dg.MetadataValue.int(len(manifest.by_role("scene"))),
        "bench_scenes": dg.MetadataValue.int(len(manifest.by_role("bench"))),
        "bytes": dg.MetadataValue.int(nbytes),
        "classes": dg.MetadataValue.json({str(k): v for k, v in manifest.classes.items()}),
        "items": items,
    }
