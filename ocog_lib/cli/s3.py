"""`ocog s3 serve | status | stop`: the embedded S3 endpoint (ocog_lib.remote.endpoint)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from ocog_lib.settings import Settings

_IN_MEMORY = (
    "objects live in the server's memory: after `ocog s3 stop` or a reboot a new server "
    "starts empty and consumers upload again (uploads skip what is already there)"
)


def register_s3(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "s3",
        help="the embedded S3 endpoint (used when no endpoint is configured)",
        description="ocog reads and uploads through OCOG_S3_ENDPOINT, else AWS_ENDPOINT_URL_S3, "
        "else AWS_ENDPOINT_URL; with none set it uses an embedded S3 server (moto) on "
        "127.0.0.1, started on first use and kept running. Bucket: $OCOG_S3_BUCKET "
        f"(default ocog); port: $OCOG_S3_PORT (default any free one). Note: {_IN_MEMORY}. "
        "(`ocog bench compare --remote` with no endpoint set starts a private server for its "
        "run instead.)",
    )
    sub = p.add_subparsers(dest="s3_cmd", required=True, metavar="{serve,status,stop}")

    serve = sub.add_parser(
        "serve",
        help="start the embedded endpoint (or reuse the running one) and print its address",
        description="Start the embedded S3 server detached, or reuse the one already running "
        "for this $OCOG_DATA_DIR, create the bucket, and print the address. Its PID and port "
        "are kept in $OCOG_DATA_DIR/s3/endpoint.json. The server accepts any credentials "
        "(e.g. `aws --endpoint-url URL --no-sign-request s3 ls`).",
    )
    serve.add_argument("--json", action="store_true", help="print one JSON object")
    serve.set_defaults(func=_cmd_serve)

    status = sub.add_parser(
        "status",
        help="which endpoint ocog uses, and whether the embedded one runs",
        description="Print the configured endpoint (if any) and the embedded server's state "
        "(PID, address, uptime); starts nothing. Exit status 0 either way.",
    )
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(func=_cmd_status)

    stop = sub.add_parser(
        "stop",
        help="stop the embedded endpoint (its objects are gone)",
        description="Stop the embedded S3 server by its PID (SIGTERM, then SIGKILL) and remove "
        "its state file. Its objects are lost: they live in its memory.",
    )
    stop.add_argument("--json", action="store_true", help="print one JSON object")
    stop.set_defaults(func=_cmd_stop)


def _configured() -> dict | None:
    from ocog_lib.remote.endpoint import configured_endpoint
    from ocog_lib.secrets import redact_uri

    found = configured_endpoint()
    return None if found is None else {"variable": found[0], "url": redact_uri(found[1])}


def _cmd_serve(args: argparse.Namespace) -> int:
    from ocog_lib.remote.endpoint import embedded_endpoint, embedded_status

    settings = Settings.from_env()
    before = embedded_status(settings)
    endpoint = embedded_endpoint(settings)
    reused = before is not None and before.pid == endpoint.pid
    configured = _configured()
    if args.json:
        print(json.dumps({"url": endpoint.url, "bucket": endpoint.bucket, "pid": endpoint.pid,
                          "reused": reused, "configured": configured}))  # fmt: skip
        return 0
    verb = "running" if reused else "started"
    print(f"embedded S3 endpoint {verb}: {endpoint.url} (pid {endpoint.pid}), "
          f"bucket {endpoint.bucket}")  # fmt: skip
    print(f"  point other tools at it: export AWS_ENDPOINT_URL_S3={endpoint.url}")
    print(f"  note: {_IN_MEMORY}")
    if configured:
        print(f"  note: {configured['variable']} is set ({configured['url']}): ocog uses that "
              "endpoint, not this one", file=sys.stderr)  # fmt: skip
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from ocog_lib.remote.endpoint import bucket_from_env, embedded_status, state_path

    settings = Settings.from_env()
    state = embedded_status(settings)
    configured = _configured()
    embedded = None
    if state is not None:
        embedded = {"url": state.url, "pid": state.pid, "started_at": state.started_at,
                    "uptime_s": round(time.time() - state.started_at, 1)}  # fmt: skip
    if args.json:
        print(json.dumps({"configured": configured, "embedded": embedded,
                          "bucket": bucket_from_env(),
                          "state_file": str(state_path(settings))}))  # fmt: skip
        return 0
    if configured:
        print(f"endpoint: {configured['url']} (from {configured['variable']})")
    else:
        print("endpoint: the embedded one (no OCOG_S3_ENDPOINT / AWS_ENDPOINT_URL_S3 / "
              "AWS_ENDPOINT_URL set)")  # fmt: skip
    print(f"bucket: {bucket_from_env()}")
    if embedded:
        print(f"embedded: running at {embedded['url']} (pid {embedded['pid']}, up "
              f"{embedded['uptime_s']:.0f} s)")  # fmt: skip
    else:
        print("embedded: not running (starts on first use, or with `ocog s3 serve`)")
    print(f"state file: {state_path(settings)}")
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    from ocog_lib.remote.endpoint import stop_embedded

    pid = stop_embedded(Settings.from_env())
    if args.json:
        print(json.dumps({"stopped_pid": pid}))
    elif pid is None:
        print("embedded S3 endpoint: not running")
    else:
        print(f"embedded S3 endpoint stopped (pid {pid}); its objects are gone")
    return 0
