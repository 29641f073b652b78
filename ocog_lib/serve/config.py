"""`ServeConfig`: the tile server's knobs, checked once, shown as the CLI's defaults.

No FastAPI, no rasterio here: `ocog serve --help` reads these defaults and must stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass

from ocog_lib.errors import InputError

DEFAULT_EXPRESSION = "(nir-red)/(nir+red)"
DEFAULT_RESCALE = (-1.0, 1.0)  # the stretch of the default NDVI, the same for every tile
MAX_EXPORT_PIXELS = 8192 * 8192  # ocog_lib.cube.reads.MAX_VIEW_PIXELS (not imported: fast)


@dataclass(frozen=True)
class ServeConfig:
    """Where the server listens and how much it may hold and compute at once.

    `tile_cache_mb` bounds the process-wide cache of encoded tiles (LRU by bytes);
    `max_concurrent` bounds computations running at once (each in the thread pool, never on
    the event loop), so a burst of requests queues instead of multiplying memory;
    `max_queued` bounds the queue.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    tile_cache_mb: float = 128.0
    max_concurrent: int = 4
    max_queued: int = 1024  # computations waiting for a slot; one more is a 503
    max_expression_chars: int = 512
    tile_size: int = 256
    max_age_s: int = 3600  # Cache-Control max-age of a tile (its ETag names its content)
    max_overzoom: int = 6  # zooms past the data's finest still served (magnified pixels)
    max_export_pixels: int = 4096 * 4096  # the largest /export, refused (413) before reading
    export_dir: str | None = None  # where /export writes; None: $OCOG_DATA_DIR/serve/exports

    def __post_init__(self) -> None:
        checks = (
            ("port", 0 <= self.port <= 65535, "must be in 0..65535"),
            ("tile_cache_mb", self.tile_cache_mb >= 0, "must be 0 (no cache) or more"),
            ("max_concurrent", self.max_concurrent >= 1, "must be at least 1"),
            ("max_queued", self.max_queued >= 0, "must be 0 or more"),
            ("max_expression_chars", self.max_expression_chars >= 1, "must be at least 1"),
            ("tile_size", 16 <= self.tile_size <= 1024, "must be in 16..1024"),
            ("max_age_s", self.max_age_s >= 0, "must be 0 or more"),
            ("max_overzoom", 0 <= self.max_overzoom <= 24, "must be in 0..24"),
            ("max_export_pixels", 1 <= self.max_export_pixels <= MAX_EXPORT_PIXELS,
             f"must be in 1..{MAX_EXPORT_PIXELS} (the cube's largest box)"),
        )
        for name, ok, rule in checks:
            if not ok:
                raise InputError(f"ServeConfig.{name}={getattr(self, name)!r}", rule)
        if not self.host:
            raise InputError("ServeConfig.host", "must not be empty")

    @property
    def tile_cache_bytes(self) -> int:
        return int(self.tile_cache_mb * 2**20)
