"""`ocog serve`: the tile server (ocog_lib.serve) over a time stack, in the foreground."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ocog_lib.cli.types import default, int_range
from ocog_lib.settings import Settings

_CONFIG = ("ocog_lib.serve.config", "ServeConfig")
SAMPLE_STACK = "sample-s2"  # the sample's derived time stack, under $OCOG_DATA_DIR/timestack/


def register_serve(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve", help="serve XYZ tiles computed on the fly over a time stack",
        description="Serve band math reduced over time, per XYZ tile, straight from a time "
        "stack's COGs (nothing is stored): GET /tiles/{tms}/{z}/{x}/{y}.{png,npy,tif}, "
        "/point/{lon},{lat}, /scenes, /export (a reduced COG for a bbox), /healthz; API docs at "
        "/docs. Runs until Ctrl-C.",
    )
    p.add_argument("--stack", type=Path, default=None,
                   help=f"time stack folder or its stack.json (default: the sample's, "
                        f"$OCOG_DATA_DIR/timestack/{SAMPLE_STACK}, built on first use)")
    p.add_argument("--host", default=default(*_CONFIG, "host"),
                   help="address to listen on (another than 127.0.0.1 exposes the server)")
    p.add_argument("--port", type=int_range(0, 65535), default=default(*_CONFIG, "port"),
                   help="port (0: any free one)")
    p.add_argument("--cache-mb", type=float, default=default(*_CONFIG, "tile_cache_mb"),
                   help="tile cache size, MiB")
    p.add_argument("--max-concurrent", type=int_range(1, 256),
                   default=default(*_CONFIG, "max_concurrent"),
                   help="tile computations at once")
    p.add_argument("--max-queued", type=int_range(0, 1_000_000),
                   default=default(*_CONFIG, "max_queued"),
                   help="computations waiting for a slot; one more answers 503")
    p.set_defaults(func=_cmd_serve)


def sample_stack(settings: Settings) -> Path:
    """The sample's time stack, written on first use."""
    from ocog_lib.data.timestack import build_time_stack

    folder = settings.data_dir / "timestack" / SAMPLE_STACK
    if not (folder / "stack.json").exists():
        print(f"ocog: building the sample time stack in {folder}", file=sys.stderr)
        build_time_stack(folder)
    return folder


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ocog_lib.serve.app import create_app
    from ocog_lib.serve.config import ServeConfig

    config = ServeConfig(host=args.host, port=args.port, tile_cache_mb=args.cache_mb,
                         max_concurrent=args.max_concurrent,
                         max_queued=args.max_queued)  # fmt: skip
    stack = args.stack or sample_stack(Settings.from_env())
    app = create_app(stack, config=config)
    print(f"ocog: serving {stack} on http://{config.host}:{config.port} (docs: /docs)",
          file=sys.stderr, flush=True)  # fmt: skip
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning")
    return 0
