"""`TileService`: the server's work without HTTP: plan a tile (its key), compute, encode.

Planning is cheap (parse, select scenes, stat the files it reads) so a 304 or a cache hit
never touches pixels; computing reads through `ocog_lib.cube.reads` in the service's own
thread pool, `max_concurrent` at a time.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ocog_lib.cube.expression import Expression
from ocog_lib.cube.reads import read_point, read_tile
from ocog_lib.cube.reducers import REDUCERS
from ocog_lib.cube.stack import SceneStack
from ocog_lib.cube.zooms import finest_zoom
from ocog_lib.errors import InputError
from ocog_lib.serve.cache import CachedTile, TileCache
from ocog_lib.serve.config import ServeConfig
from ocog_lib.serve.encode import MEDIA_TYPES, encode_npy, encode_png, encode_tif
from ocog_lib.serve.errors import ApiError
from ocog_lib.serve.identity import content_key
from ocog_lib.serve.params import TileQuery, png_rescale
from ocog_lib.serve.tiles import TileAddress
from ocog_lib.settings import Settings

_MAX_IDS_HEADER = 4000  # characters of X-Scene-Ids; longer lists end in ",..."


@dataclass(frozen=True)
class TilePlan:
    address: TileAddress
    query: TileQuery
    expression: Expression
    stack: SceneStack  # the selection: only the scenes the dates and cloud cover choose
    sources: frozenset[str]  # every file the tile may read
    key: str  # the ETag and the cache key


class TileService:
    def __init__(self, stack: SceneStack, config: ServeConfig):
        self.stack = stack
        self.config = config
        self.cache = TileCache(config.tile_cache_bytes)
        self.executor = ThreadPoolExecutor(config.max_concurrent, thread_name_prefix="ocog-tile")
        self.sources = frozenset(stack.uri(s, a) for s in stack.scenes for a in s.assets)
        self._finest: dict[str, int] = {}  # TMS -> the stack's finest zoom there
        folder = config.export_dir or Settings.from_env().data_dir / "serve" / "exports"
        self.export_dir = Path(folder)  # /export's COGs, each unlinked once streamed

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    def expression(self, text: str) -> Expression:
        if len(text) > self.config.max_expression_chars:
            raise ApiError(f"expression={text[:40]}...", f"{len(text)} characters, more than "
                           f"the {self.config.max_expression_chars} allowed",
                           error="invalid expression")  # fmt: skip
        try:
            return Expression.parse(text, self.stack.bands, self.stack.aliases)
        except InputError as exc:
            raise ApiError(exc.what, exc.cause, error="invalid expression") from None

    def check_reducer(self, query: TileQuery) -> None:
        if query.reducer not in REDUCERS:
            raise ApiError(f"reducer={query.reducer}", f"unknown reducer; one of "
                           f"{', '.join(REDUCERS)}", error="unknown reducer")  # fmt: skip
        if query.reducer == "percentile" and query.p is None:
            raise ApiError("p", "reducer=percentile needs p (0..100)", error="missing p")
        if query.reducer != "percentile" and query.p is not None:
            raise ApiError(f"p={query.p:g}", f"only reducer=percentile takes p, not "
                           f"{query.reducer}", error="p without percentile")  # fmt: skip

    def selection(self, query: TileQuery) -> SceneStack:
        """The scenes the query's dates and cloud limit choose; none is a 404 saying why."""
        chosen = self.stack.select(start=query.start, end=query.end, max_cloud=query.max_cloud)
        if not chosen.stack.scenes:
            given = {"start": _iso(query.start), "end": _iso(query.end),
                     "max_cloud": query.max_cloud}  # fmt: skip
            shown = " ".join(f"{k}={v}" for k, v in given.items() if v is not None)
            raise ApiError(shown or "the stack", f"no scene selected: {chosen.summary()}",
                           status=404, error="no scenes")  # fmt: skip
        return chosen.stack

    def check_zoom(self, address: TileAddress) -> None:
        """A zoom past the data's finest plus `max_overzoom` is outside the data (404)."""
        if address.tms not in self._finest:
            self._finest[address.tms] = finest_zoom(self.stack, address.tms)
        top = self._finest[address.tms] + self.config.max_overzoom
        if address.z > top:
            raise ApiError(f"z={address.z}", f"past the data's zooms in {address.tms}: its finest "
                           f"is {self._finest[address.tms]}, served up to {top} "
                           f"(max_overzoom {self.config.max_overzoom})", status=404,
                           error="zoom outside the data")  # fmt: skip

    def plan(self, address: TileAddress, query: TileQuery) -> TilePlan:
        expression = self.expression(query.expression)
        self.check_zoom(address)
        self.check_reducer(query)
        if address.fmt == "png":
            png_rescale(query)  # refused before any read
        chosen = self.selection(query)
        sources = frozenset(self._uris(chosen, expression))
        key = content_key(sources, address.key_args() | query.key_args(address.fmt))
        return TilePlan(address, query, expression, chosen, sources, key)

    def _uris(self, chosen: SceneStack, expression: Expression) -> list[str]:
        bands = list(expression.bands)
        if chosen.mask_asset:
            bands.append(chosen.mask_asset)
        return [chosen.uri(scene, band) for scene in chosen.scenes for band in bands
                if band in scene.assets]  # fmt: skip

    def compute(self, plan: TilePlan) -> CachedTile:
        """Read, reduce and encode one tile (runs in the pool)."""
        t0 = time.perf_counter()
        a, q = plan.address, plan.query
        tile = read_tile(plan.stack, a.z, a.x, a.y, expression=q.expression,
                         reducer=q.reducer, p=q.p, tms=a.tms, size=a.size,
                         resampling=q.resampling, start=q.start, end=q.end,
                         max_cloud=q.max_cloud)  # fmt: skip
        if a.fmt == "png":
            from ocog_lib.serve.colormaps import colorize

            body = encode_png(colorize(tile.data, png_rescale(q), q.colormap))
        elif a.fmt == "npy":
            body = encode_npy(tile.data)
        else:
            body = encode_tif(tile.data, a.bounds(), a.crs())
        ids = ",".join(tile.scenes)
        if len(ids) > _MAX_IDS_HEADER:
            ids = ids[:_MAX_IDS_HEADER].rsplit(",", 1)[0] + ",..."
        headers = (("X-Compute-Ms", f"{(time.perf_counter() - t0) * 1e3:.1f}"),
                   ("X-Scenes", str(len(tile.scenes))), ("X-Scene-Ids", ids),
                   ("X-Bytes-Fetched", str(int(tile.bytes_fetched))))  # fmt: skip
        return CachedTile(body, MEDIA_TYPES[a.fmt], headers)

    def point(self, lon: float, lat: float, query: TileQuery) -> tuple[list[dict], int]:
        """The expression's value at (lon, lat) in every selected scene, oldest first."""
        self.expression(query.expression)
        chosen = self.selection(query)
        values = read_point(chosen, lon, lat, expression=query.expression, start=query.start,
                            end=query.end)  # fmt: skip
        rows = [{"scene": v.scene_id, "datetime": _iso(v.datetime), "value": v.value}
                for v in values]  # fmt: skip
        return rows, len(chosen.scenes)

    def scenes(self, query: TileQuery) -> dict:
        """What the query selects and why, with each scene's date and cloud cover."""
        chosen = self.stack.select(start=query.start, end=query.end, max_cloud=query.max_cloud)
        by_id = {s.id: s for s in self.stack.scenes}
        rows = [{"id": sid, "datetime": _iso(by_id[sid].datetime),
                 "cloud_cover": by_id[sid].cloud_cover, "chosen": bool(ok), "why": why}
                for sid, ok, why in chosen.reasons]  # fmt: skip
        return {"stack": self.stack.name, "query": {"start": _iso(query.start),
                "end": _iso(query.end), "max_cloud": query.max_cloud},
                "selected": sum(r["chosen"] for r in rows), "scenes": rows}  # fmt: skip


def _iso(value) -> str | None:
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z") if hasattr(value, "isoformat") else str(value)
