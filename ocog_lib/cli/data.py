"""`ocog data ...`: real data in (same library calls as the data assets).

    ocog data sources                       where each dataset comes from, citation, terms
    ocog data s2 search --tiles 36MZD ...   STAC search; the chosen scene per tile goes to
                                            the scene catalog (data/raw/sentinel-2)
    ocog data s2 acquire [--tiles ...]      download + stack the catalog's scenes into
                                            raw scenes (data/raw/tiles/<tile>.tif)
    ocog data prepare vaihingen|potsdam|dfc22
                                            prepared dataset from data/raw/<dataset>
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ocog_lib.cli import types as T
from ocog_lib.settings import Settings

_QUERY = ("ocog_lib.data.sentinel2", "SceneQuery")


def register_data(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser(
        "data", help="acquire Sentinel-2 scenes, prepare benchmark datasets",
        description="Real data in: Sentinel-2 L2A scenes by STAC, and the Vaihingen, Potsdam "
        "and DFC-22 benchmarks from the archives you downloaded.",
    )
    sub = data.add_subparsers(dest="data_cmd", required=True, metavar="{sources,s2,prepare}")

    src = sub.add_parser("sources", help="where to obtain each dataset, citation and terms",
                         description="Where to obtain each external dataset, how to cite it "
                         "and its terms of use, and the STAC APIs ocog knows.")
    src.add_argument("--json", action="store_true", help="print one JSON object")
    src.set_defaults(func=_cmd_sources)

    s2 = sub.add_parser("s2", help="Sentinel-2 L2A scenes by STAC",
                        description="Find Sentinel-2 L2A scenes per MGRS tile and download them.")
    s2sub = s2.add_subparsers(dest="s2_cmd", required=True,
                              metavar="{search,acquire,stack}")  # fmt: skip
    _register_s2_search(s2sub)
    _register_s2_acquire(s2sub)
    _register_s2_stack(s2sub)
    _register_prepare(sub)


def _register_s2_search(s2sub: argparse._SubParsersAction) -> None:
    search = s2sub.add_parser(
        "search", help="choose one scene per tile; update the scene catalog",
        description="Search a STAC API for Sentinel-2 L2A scenes of MGRS tiles (or named "
        "items), choose one per tile and record it in the scene catalog. Without --tiles "
        "and --ids: the OCOG toolkit's seven tiles, Oct-Dec 2024.",
    )
    search.add_argument("--api", default="earth-search",
                        help="earth-search, planetary-computer or a STAC API URL")
    search.add_argument("--collection", default="sentinel-2-l2a", help="STAC collection")
    search.add_argument("--tiles", nargs="*", default=[], help="MGRS tiles, e.g. 36MZD T37MBV")
    search.add_argument("--ids", nargs="*", default=[], help="explicit STAC item ids")
    first, last = T.constant("ocog_lib.data.sentinel2", "OCOG_TOOLKIT_PERIOD")
    search.add_argument("--start", default=None,
                        help=f"first day, ISO (default: {first} for the toolkit's tiles, else "
                        "open)")  # fmt: skip
    search.add_argument("--end", default=None,
                        help=f"last day, ISO (default: {last} for the toolkit's tiles, else "
                        "open)")  # fmt: skip
    search.add_argument("--max-cloud", type=T.float_range(0, 100),
                        default=T.default(*_QUERY, "max_cloud_cover"),
                        help="cloud cover limit, percent")
    search.add_argument("--prefer", choices=["least_cloudy", "newest"],
                        default=T.default(*_QUERY, "prefer"),
                        help="which scene under the cloud limit")
    search.add_argument("--json", action="store_true", help="print one JSON object")
    search.set_defaults(func=_cmd_s2_search)


def _register_s2_acquire(s2sub: argparse._SubParsersAction) -> None:
    acquire = s2sub.add_parser(
        "acquire", help="download and stack the catalog's scenes",
        description="Download the four 10 m bands of each tile's catalog scene (ranged, "
        "resumable, size-checked) and stack them into data/raw/tiles/<tile>.tif.",
    )
    acquire.add_argument("--tiles", nargs="*", default=[], help="tiles (default: all in the "
                                                                "catalog)")
    acquire.add_argument("--keep-bands", action="store_true", help="keep the band downloads")
    acquire.add_argument("--connections", type=T.positive_int,
                         default=T.default("ocog_lib.data.sentinel2", "acquire_scene",
                                           "connections"),
                         help="ranged GETs in flight per band")
    acquire.set_defaults(func=_cmd_s2_acquire)


def _register_s2_stack(s2sub: argparse._SubParsersAction) -> None:
    stack = s2sub.add_parser(
        "stack", help="a time stack (stack.json) of every scene of a tile in a period",
        description="Search a STAC API for every Sentinel-2 L2A scene of one MGRS tile in a "
        "period under a cloud limit and write a stack.json over the items' own COG hrefs "
        "(nothing downloaded): `ocog serve <out>` then reduces it over time. Default: the "
        "OCOG toolkit's first tile and period.",
    )
    stack.add_argument("out", type=Path, help="folder for stack.json")
    stack.add_argument("--api", default="earth-search", help="earth-search or a STAC API URL "
                       "(hrefs must not need signing)")  # fmt: skip
    stack.add_argument("--collection", default="sentinel-2-l2a", help="STAC collection")
    first_tile = T.constant("ocog_lib.data.sentinel2", "OCOG_TOOLKIT_TILES")[0]
    first, last = T.constant("ocog_lib.data.sentinel2", "OCOG_TOOLKIT_PERIOD")
    stack.add_argument("--tile", default=first_tile, help="MGRS tile")
    stack.add_argument("--start", default=first, help="first day, ISO")
    stack.add_argument("--end", default=last, help="last day, ISO")
    stack.add_argument("--max-cloud", type=T.float_range(0, 100),
                       default=T.default(*_QUERY, "max_cloud_cover"),
                       help="cloud cover limit, percent")
    stack.add_argument("--name", default=None, help="the stack's name (default: from the "
                       "tile and dates)")  # fmt: skip
    stack.set_defaults(func=_cmd_s2_stack)


def _register_prepare(sub: argparse._SubParsersAction) -> None:
    prep = sub.add_parser(
        "prepare", help="prepare a benchmark from its raw archives",
        description="Turn the archives under $OCOG_DATA_DIR/raw/<dataset> (unpacked or not) "
        "into a prepared dataset (scenes, masks, manifest.json).",
    )
    prep.add_argument("dataset", choices=T.constant("ocog_lib.data.benchmarks", "BENCHMARKS"))
    prep.add_argument("--eroded", action="store_true",
                      help="vaihingen/potsdam: eroded ground truth (boundaries ignored)")
    prep.add_argument("--imagery", default=None, choices=["RGBIR", "RGB", "IRRG"],
                      help="potsdam: which orthophotos (default: first found)")
    prep.add_argument("--crs", default=None, help="CRS for world-file georeferencing "
                                                  "without a .prj, e.g. EPSG:32632")
    prep.add_argument("--limit", type=T.positive_int, default=None,
                      help="at most this many items (default: all)")
    prep.set_defaults(func=_cmd_prepare)


def _cmd_sources(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ocog_lib.data.external import EXTERNAL_DATASETS
    from ocog_lib.data.sentinel2 import STAC_APIS

    if args.json:
        print(json.dumps({"datasets": {k: asdict(v) for k, v in EXTERNAL_DATASETS.items()},
                          "stac_apis": {k: asdict(v) for k, v in STAC_APIS.items()}}))
        return 0
    settings = Settings.from_env()
    for d in EXTERNAL_DATASETS.values():
        print(f"{d.name}: {d.title}\n  get:      {d.url}\n  files:    {'; '.join(d.archives)}"
              f"\n  put in:   {settings.raw_dir(d.name)}\n  expects:  {d.expected}"
              f"\n  cite:     {d.citation}\n  terms:    {d.terms}\n")
    print("Sentinel-2 L2A STAC APIs:")
    for api in STAC_APIS.values():
        signing = f", hrefs signed ({api.signing})" if api.signing else ""
        print(f"  {api.name}: {api.url} (collection {api.collection}{signing})")
    return 0


def _query(args: argparse.Namespace):
    from ocog_lib.data.sentinel2 import OCOG_TOOLKIT_PERIOD, OCOG_TOOLKIT_TILES, SceneQuery

    toolkit = not args.tiles and not args.ids
    start, end = args.start, args.end
    if toolkit:
        start, end = start or OCOG_TOOLKIT_PERIOD[0], end or OCOG_TOOLKIT_PERIOD[1]
    return SceneQuery(tiles=tuple(OCOG_TOOLKIT_TILES if toolkit else args.tiles), start=start,
                      end=end, max_cloud_cover=args.max_cloud, prefer=args.prefer,
                      scene_ids=tuple(args.ids))


def _cmd_s2_search(args: argparse.Namespace) -> int:
    from ocog_lib.data.raw_scenes import discover_into_catalog
    from ocog_lib.data.sentinel2 import stac_api

    update = discover_into_catalog(Settings.from_env(),
                                   stac_api(args.api, collection=args.collection), _query(args))
    found, new, changed = update.found, update.new, update.changed
    if args.json:
        print(json.dumps({
            "catalog": str(update.catalog),
            "scenes": {t: {"item_id": s.id, "datetime": s.datetime, "cloud_cover": s.cloud_cover}
                       for t, s in sorted(found.scenes.items())},
            "new_tiles": new, "changed_tiles": changed,
            "unmatched_tiles": found.unmatched_tiles,
            "skipped": [{"item_id": s.item_id, "tile": s.tile, "reason": s.reason}
                        for s in found.skipped],
        }))
        return 0
    for tile, s in sorted(found.scenes.items()):
        mark = "new" if tile in new else "changed" if tile in changed else ""
        print(f"{tile}  {s.id}  {s.datetime}  cloud {s.cloud_cover}  {mark}".rstrip())
    for s in found.skipped:
        print(f"skipped {s.item_id} ({s.tile or '?'}): {s.reason}")
    if found.unmatched_tiles:
        print(f"no usable scene: {', '.join(found.unmatched_tiles)}")
    print(f"catalog: {update.catalog}")
    return 0 if found.scenes else 1


def _cmd_s2_acquire(args: argparse.Namespace) -> int:
    from ocog_lib.data.raw_scenes import acquire_raw_scene, catalog_tiles

    settings = Settings.from_env()
    for tile in catalog_tiles(settings, args.tiles):
        got = acquire_raw_scene(settings, tile, keep_bands=args.keep_bands,
                                connections=args.connections,
                                progress=lambda m: print(m, file=sys.stderr, flush=True)).acquired
        how = "kept (same scene)" if got.reused else f"{got.bytes_fetched / 1e6:.1f} MB fetched"
        print(f"{tile}  {got.item_id}  {got.path}  {how}  {got.seconds:.1f} s")
    return 0


def _cmd_s2_stack(args: argparse.Namespace) -> int:
    from ocog_lib.cube.stac import build_stac_stack
    from ocog_lib.data.sentinel2 import SceneQuery, stac_api

    query = SceneQuery(tiles=(args.tile,), start=args.start, end=args.end,
                       max_cloud_cover=args.max_cloud)
    got = build_stac_stack(stac_api(args.api, collection=args.collection), query, args.out,
                           name=args.name)  # fmt: skip
    for scene in got.stack.scenes:
        print(f"{scene.id}  {scene.datetime:%Y-%m-%d}  cloud {scene.cloud_cover}")
    for s in got.skipped:
        print(f"skipped {s.item_id}: {s.reason}")
    mask = "SCL mask" if got.masked else "no mask (an item lacks scl)"
    print(f"{got.path}: {len(got.stack.scenes)} scenes of {args.tile}, {mask}")
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from ocog_lib.data.benchmarks import BenchmarkOptions, prepare_benchmark

    settings = Settings.from_env()
    options = BenchmarkOptions(eroded=args.eroded, imagery=args.imagery, crs=args.crs,
                               limit=args.limit)
    result = prepare_benchmark(settings, args.dataset, options,
                               progress=lambda m: print(m, file=sys.stderr, flush=True))
    out = settings.prepared_dir(args.dataset)
    for name, reason in result.skipped:
        print(f"skipped {name}: {reason}")
    print(f"prepared {args.dataset} in {out}: {len(result.manifest.items)} scenes"
          + (f", {result.unlabeled} unlabeled image(s) left out" if result.unlabeled else ""))
    return 0

