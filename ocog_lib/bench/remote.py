"""`ocog bench compare --remote`: the same comparison from object storage, over an emulated WAN.

The variants' benchmark scenes are uploaded (idempotently) to an S3-compatible endpoint
(the embedded moto server on 127.0.0.1 when none is configured); every loader then reads
them through the WAN shaper (per-request RTT, shared bandwidth cap). Rows carry the RTT,
the cap and bytes on the wire per sample; the ceilings are the link limit (cap x the
variant's compression ratio, in patches/s) and the decode limit for the same windows.
The embedded server's own throughput on this machine is measured and reported too: past
it, no loader can go faster whatever the cap says.
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ocog_lib.bench.local import (
    BenchRow,
    Measurement,
    _config_dict,
    _decoded_gib,
    _length_for,
    bench_files,
    run_ocog,
    run_reference,
)
from ocog_lib.env import gdal_cache_of_config, scoped_env
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings
from ocog_lib.stream.dataset import CogStream, StreamConfig
from ocog_lib.stream.footprint import tile_bytes_per_sample
from ocog_lib.stream.rasters import RasterSource, open_raster
from ocog_lib.stream.samplers import link_reuse


@dataclass(frozen=True)
class RemoteCompareConfig:
    dataset: str = "sample"
    variants: tuple[str, ...] = ("default", "optimal_local", "optimal_remote")
    samplers: tuple[str, ...] = ("random", "block")
    caps_mb_s: tuple[float, ...] = (100.0, 1000.0)
    rtt_ms: float = 30.0
    patch_size: int = 256
    batch_size: int = 32
    repeats: int = 1
    seconds: float = 8.0
    warmup_seconds: float = 3.0  # after the first batch: queues filled at start-up drain here
    cache_mb: float = 128.0
    # ocog rows per variant and sampler: plain (1 window per tile visit) and the engine's
    # default over remote sources (auto: samplers.link_reuse); best_reuse > 1 adds one more
    best_reuse: int = 0
    # also stream a variant whose tiles are the patch size (LERC_ZSTD, written if missing):
    # a plain window then fetches one tile of its own size, not 4x its area
    patch_sized_tiles: bool = True
    io_threads: int = 32
    seed: int = 0
    # the toolkit's configs run against the remote files: default and remote-optimal
    reference_configs: tuple[str, ...] = ("default", "remote_optimal")
    bucket: str = "ocog-bench"
    # HDF5 packages of the same windows read by byte ranges (h5py over ocog's storage);
    # h5py reads one chunk at a time per process, so the workers are processes
    hdf5: tuple[str, ...] = ()  # compressions, e.g. ("gzip", "none"); () = no HDF5 rows
    hdf5_workers: int = 16
    hdf5_samples: int = 2048

    @classmethod
    def quick(cls, **overrides) -> RemoteCompareConfig:
        # the toolkit's 64-worker config needs minutes and ~10 GB here: full runs only
        quick = cls(
            seconds=3.0, warmup_seconds=2.0, caps_mb_s=(100.0,), reference_configs=("default",)
        )
        return replace(quick, **overrides)


@contextmanager
def _endpoint(bucket: str) -> Iterator[tuple[str, Callable[[str | None], dict], object]]:
    """(endpoint url, env for a given front url, client) of the configured or embedded S3."""
    from ocog_lib.storage import s3_endpoint_from_env

    configured = s3_endpoint_from_env()
    if configured:
        import boto3

        client = boto3.client("s3", endpoint_url=configured)

        def env(front: str | None) -> dict:
            url = front or configured
            return {
                "AWS_ENDPOINT_URL_S3": url,
                "AWS_S3_ENDPOINT": url.split("://", 1)[-1],
                "AWS_HTTPS": "YES" if url.startswith("https") else "NO",
                "AWS_VIRTUAL_HOSTING": "FALSE",
            }

        yield configured, env, client
        return
    from ocog_lib.memory import not_measured
    from ocog_lib.remote.s3server import EmbeddedS3

    with EmbeddedS3() as server, not_measured(server.pid):
        server.ensure_bucket(bucket)
        yield server.endpoint_url, server.env, server.client()


def _ratio(rasters: list[RasterSource]) -> float:
    """Decoded / stored bytes of a variant's full-resolution tiles (its compression ratio).

    Overviews and the header are left out: they are never streamed, and counting them
    (a third more bytes) would lower the link limit by a quarter."""
    decoded = stored = 0
    for r in rasters:
        decoded += r.height * r.width * r.bands * r.dtype.itemsize
        tiles = r.index.levels[0].byte_counts.sum() if r.index else Path(r.uri).stat().st_size
        stored += int(tiles)  # a GDAL-only raster (no parsed index): its whole file
    return decoded / stored


def _server_ceiling(url: str, uri: str, seconds: float = 2.0) -> float:
    """MB/s the endpoint itself serves (1 MiB ranges, 16 in flight, no shaper)."""
    from concurrent.futures import ThreadPoolExecutor

    from ocog_lib.storage import open_source

    src = open_source(uri)
    size = src.size()
    chunk = 1 << 20
    deadline = time.perf_counter() + seconds

    def pull(i: int) -> int:
        got = 0
        k = i
        while time.perf_counter() < deadline:
            got += len(src.read((k * chunk * 7) % max(1, size - chunk), chunk))
            k += 16
        return got

    t0 = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        total = sum(pool.map(pull, range(16)))
    return total / (time.perf_counter() - t0) / 1e6


@gdal_cache_of_config
def compare_remote(
    cfg: RemoteCompareConfig,
    settings: Settings | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """ocog vs the reference loader vs the link and decode limits, from object storage."""
    from ocog_lib.bench.limits import decode_limit
    from ocog_lib.memory import not_measured
    from ocog_lib.remote.shaper import Shaper
    from ocog_lib.remote.upload import upload_file

    settings = settings or Settings.from_env()
    say = progress or (lambda _m: None)
    if cfg.patch_sized_tiles:
        from ocog_lib.search.core import ensure_variant

        say(f"variant with {cfg.patch_size}-px tiles")
        spec = f"lerc_zstd:level=9,block={cfg.patch_size}"
        name = ensure_variant(cfg.dataset, spec, settings)
        cfg = replace(cfg, variants=tuple(dict.fromkeys((*cfg.variants, name))))
    variants = tuple(dict.fromkeys(("default", *cfg.variants)))
    if "remote_optimal" in cfg.reference_configs and "optimal_remote" not in variants:
        variants = (*variants, "optimal_remote")
    local = {v: bench_files(cfg.dataset, v, settings)[0] for v in variants}
    # the local copies' headers, parsed once: shapes, tile grids, ratios, windows
    parsed = {v: [open_raster(path) for path in local[v]] for v in variants}
    p = cfg.patch_size
    threads = os.cpu_count() or 1
    patch_bytes = {}
    for v in variants:
        r0 = parsed[v][0]
        patch_bytes[v] = p * p * r0.bands * r0.dtype.itemsize

    rows: list[BenchRow] = []
    hdf5_ratio: dict[str, float] = {}
    with _endpoint(cfg.bucket) as (url, env_for, client):
        uris: dict[str, list[str]] = {}
        for v in variants:
            uris[v] = []
            for path in local[v]:
                uri = f"s3://{cfg.bucket}/bench/{cfg.dataset}/{v}/{Path(path).name}"
                say(f"upload {Path(path).name} ({v})")
                upload_file(path, uri, client=client)
                uris[v].append(uri)
        packages = _hdf5_packages(cfg, settings, client, say) if cfg.hdf5 else []
        for _s, _uri, pkg in packages:
            v = f"hdf5_{pkg.compression}"
            patch_bytes[v] = pkg.image_bytes_per_sample
            hdf5_ratio[v] = pkg.decoded_bytes / max(1, pkg.h5_bytes)
        host, port = url.split("://", 1)[1].rsplit(":", 1)
        with scoped_env(env_for(None)):
            ceiling = _server_ceiling(url, uris["default"][0])
        say(f"endpoint serves {ceiling:.0f} MB/s unshaped (1 MiB ranges, 16 in flight)")

        for cap in cfg.caps_mb_s:
            with (
                Shaper(host, int(port), rtt_ms=cfg.rtt_ms, cap_mb_s=cap) as shaper,
                not_measured(shaper.pid),
                scoped_env(env_for(shaper.url)),
            ):
                rows += _runs_at_cap(cfg, cap, uris, local, parsed, shaper, patch_bytes, say)
                rows += _hdf5_at_cap(cfg, cap, packages, shaper, say)

    # ceilings per variant and sampler: link (cap x ratio) and decode (same windows, local)
    ratios = {**{v: _ratio(parsed[v]) for v in variants}, **hdf5_ratio}
    decode: dict[tuple[str, str], float] = {}
    for v in variants:
        r0 = parsed[v][0]
        for s in cfg.samplers:
            if r0.index is not None and r0.index.compression != 1:
                sc = StreamConfig(sampler=s, patch_size=p, length=128, seed=cfg.seed)
                wins = CogStream(local[v], None, sc, rasters=parsed[v]).windows
                say(f"decode limit: {s} on {v}")
                decode[(v, s)] = decode_limit(
                    local[v], wins, p, threads=threads, min_seconds=max(0.5, cfg.seconds / 2)
                ).samples_per_s
    limit_rows = []
    for cap in cfg.caps_mb_s:
        for v in (*variants, *hdf5_ratio):
            link = cap * 1e6 * ratios[v] / patch_bytes[v]
            limit_rows.append(
                BenchRow(
                    name="link limit",
                    loader="link_limit",
                    variant=v,
                    sampler="-",
                    samples_per_s=link,
                    mb_per_s=link * patch_bytes[v] / 1e6,
                    config={"cap_mb_s": cap, "rtt_ms": cfg.rtt_ms, "compression_ratio": ratios[v]},
                )
            )
    ref = next(
        (
            r
            for r in rows
            if r.name == "reference default" and r.config.get("cap_mb_s") == cfg.caps_mb_s[0]
        ),
        None,
    )
    for row in rows:
        cap = row.config["cap_mb_s"]
        link = cap * 1e6 * ratios[row.variant] / patch_bytes[row.variant]
        dec = decode.get((row.variant, row.sampler))
        ceiling_sps = min(link, dec) if dec else link
        row.ratio_vs_limit = row.samples_per_s / ceiling_sps
        wire = row.config.get("wire_bytes_per_sample")
        row.config = {
            **row.config,
            "link_limit_sps": link,
            "decode_limit_sps": dec,
            # share of the cap the loader's bytes on the wire fill (tiles larger than the
            # patch cost wire bytes the link limit does not count)
            "link_utilization": (
                wire * row.samples_per_s / (cap * 1e6) if wire is not None else None
            ),
        }
        same_cap_ref = next(
            (r for r in rows if r.name == "reference default" and r.config["cap_mb_s"] == cap), ref
        )
        if same_cap_ref is not None:
            row.ratio_vs_reference_default = row.samples_per_s / same_cap_ref.samples_per_s
    return {
        "run_id": uuid.uuid4().hex[:12],
        "dataset": cfg.dataset,
        "storage": "remote",
        "rtt_ms": cfg.rtt_ms,
        "caps_mb_s": list(cfg.caps_mb_s),
        "endpoint_mb_s": ceiling,
        "cache_mb": cfg.cache_mb,
        "decoded_gib": _decoded_gib(local["default"]),
        "compare": asdict(cfg),
        "rows": [asdict(r) for r in rows + limit_rows],
    }


def _layout(
    images: list[str], rasters: list[RasterSource], sc: StreamConfig
) -> tuple[StreamConfig, float | None]:
    """The row's config as the engine resolves it (on the same files, stored locally), and
    the tile bytes per sample its windows need with no cache beyond a shuffle group."""
    stream = CogStream(images, None, sc, rasters=rasters)
    k = stream.cfg.patches_per_tile
    group = stream.cfg.shuffle_tiles * k if k > 1 else 1
    return stream.cfg, tile_bytes_per_sample(stream.windows, stream.rasters, sc.patch_size, group)


def _runs_at_cap(
    cfg: RemoteCompareConfig,
    cap: float,
    uris: dict[str, list[str]],
    local: dict[str, list[str]],
    parsed: dict[str, list[RasterSource]],
    shaper,
    patch_bytes: dict[str, int],
    say: Callable[[str], None],
) -> list[BenchRow]:
    p, b = cfg.patch_size, cfg.batch_size

    def wire() -> float:
        return float(shaper.counters().bytes_down)

    plan: list[tuple[str, str, str, str, Callable[[], tuple[Measurement, float | None]], dict]]
    plan = []
    # the reference must not run dry: its start-up (up to a minute with 64 workers), a
    # warm-up as long, the timed window, and every batch its workers hold in flight
    ref_len = _length_for(2 * 60 + cfg.seconds, 200, b)
    ref_variant = {
        "default": "default",
        "remote_optimal": "optimal_remote",
        "local_optimal": "optimal_local",
    }
    ref_sampler = {"default": "random", "remote_optimal": "block", "local_optimal": "block"}
    for name in cfg.reference_configs:
        v = ref_variant[name]
        plan.append(
            (
                f"reference {name}",
                "reference",
                v,
                ref_sampler[name],
                lambda v=v, name=name: (
                    run_reference(
                        uris[v],
                        [],
                        name,
                        length=ref_len + _in_flight(name, b),
                        seed=cfg.seed,
                        min_seconds=cfg.seconds,
                        patch_size=p,
                        batch_size=b,
                        warmup_seconds=cfg.warmup_seconds,
                        warmup_covers_startup=True,
                        probe=wire,
                    ),
                    None,
                ),
                {"reference_config": name},
            )
        )
    for v in cfg.variants:
        for s in cfg.samplers:
            auto = link_reuse(s, p, parsed[v][0].tile_height, parsed[v][0].tile_width)
            for reuse in dict.fromkeys((1, auto, max(1, cfg.best_reuse))):
                sc = StreamConfig(
                    sampler=s,
                    patch_size=p,
                    batch_size=b,
                    seed=cfg.seed,
                    cache_mb=cfg.cache_mb,
                    patches_per_tile=reuse,
                    shuffle_tiles=32,
                    io_threads=cfg.io_threads,
                    prefetch=4,
                    length=_length_for(cfg.seconds, 3000, b),
                )
                label = f"ocog {s}" + (f" reuse x{reuse}" if reuse > 1 else "")
                label += " (auto)" if reuse == auto and reuse > 1 else ""
                resolved, layout = _layout(local[v], parsed[v], sc)
                plan.append(
                    (
                        label,
                        "ocog",
                        v,
                        s,
                        lambda v=v, sc=sc: (
                            run_ocog(
                                uris[v],
                                [],
                                sc,
                                min_seconds=cfg.seconds,
                                warmup_seconds=cfg.warmup_seconds,
                                warmup_covers_startup=True,
                                probe=wire,
                            ),
                            None,
                        ),
                        {
                            **_config_dict(resolved),  # shuffle group as capped
                            "auto_reuse": reuse == auto,
                            "layout_bytes_per_sample": layout,
                            "layout_limit_sps": cap * 1e6 / layout if layout else None,
                        },
                    )
                )
    results: dict[int, list[tuple[Measurement, float | None, float | None]]] = {
        i: [] for i in range(len(plan))
    }
    for r in range(cfg.repeats):
        for i, (label, _l, v, _s, fn, _c) in enumerate(plan):
            say(f"cap {cap:g} MB/s, repeat {r + 1}/{cfg.repeats}: {label} on {v}")
            m, _ = fn()
            # bytes the shaper passed during the timed window, per sample delivered in it
            w = m.probe_delta / m.samples if m.probe_delta is not None and m.samples else None
            results[i].append((m, w, None))
    out = []
    for i, (label, loader, v, s, _fn, conf) in enumerate(plan):
        ms = [m for m, _, _ in results[i]]
        wires = [w for _, w, _ in results[i] if w is not None]
        config = {
            **conf,
            "cap_mb_s": cap,
            "rtt_ms": cfg.rtt_ms,
            "wire_bytes_per_sample": statistics.median(wires) if wires else None,
            "failed_samples": sum(m.skipped for m in ms),
        }
        out.append(BenchRow.from_repeats(label, loader, v, s, ms, patch_bytes[v], config))
    return out


def _hdf5_packages(cfg: RemoteCompareConfig, settings: Settings, client, say) -> list:
    """Packages of the windows our plain rows stream, exported locally and uploaded."""
    from ocog_lib.bench.hdf5 import Hdf5BenchConfig, remote_packages
    from ocog_lib.bench.local import CompareConfig
    from ocog_lib.remote.upload import upload_file

    local_cfg = CompareConfig(
        dataset=cfg.dataset,
        samplers=cfg.samplers,
        patch_size=cfg.patch_size,
        batch_size=cfg.batch_size,
        seconds=cfg.seconds,
        seed=cfg.seed,
        with_masks=False,  # the remote rows stream images only
    )
    return remote_packages(
        local_cfg,
        cfg.hdf5,
        Hdf5BenchConfig(samples=cfg.hdf5_samples),
        settings,
        lambda path, uri: upload_file(path, uri, client=client),
        f"s3://{cfg.bucket}/bench/{cfg.dataset}/hdf5",
        say,
    )


def _hdf5_at_cap(cfg: RemoteCompareConfig, cap: float, packages: list, shaper, say) -> list:
    """One row per package: read through the shaper by DataLoader worker processes."""
    from ocog_lib.bench.hdf5 import measure_package

    out = []
    for s, uri, pkg in packages:
        ms, wires = [], []
        for r in range(cfg.repeats):
            say(f"cap {cap:g} MB/s, repeat {r + 1}/{cfg.repeats}: hdf5 {pkg.compression} {s}")
            m = measure_package(
                uri,
                batch_size=cfg.batch_size,
                workers=cfg.hdf5_workers,
                seconds=cfg.seconds,
                warmup_seconds=cfg.warmup_seconds,
                warmup_covers_startup=True,
                probe=lambda: float(shaper.counters().bytes_down),
            )
            ms.append(m)
            wires.append(m.probe_delta / max(1, m.samples))  # the timed window's bytes
        config = {
            "compression": pkg.compression,
            "workers": cfg.hdf5_workers,
            "batch_size": cfg.batch_size,
            "samples": pkg.samples,
            "package": uri,
            "h5_bytes": pkg.h5_bytes,
            "source_variant": "default",
            "storage": "remote",
            "cap_mb_s": cap,
            "rtt_ms": cfg.rtt_ms,
            "wire_bytes_per_sample": statistics.median(wires),
            "failed_samples": 0,
        }
        out.append(
            BenchRow.from_repeats(
                f"hdf5 {pkg.compression} {s}", "hdf5", f"hdf5_{pkg.compression}", s, ms,
                pkg.image_bytes_per_sample, config,
            )  # fmt: skip
        )
    return out


def _in_flight(reference_config: str, batch: int) -> int:
    """Samples the reference's workers may hold requested at once (workers x prefetch)."""
    from ocog_lib.bench.reference import REFERENCE_CONFIGS

    rc = REFERENCE_CONFIGS[reference_config]
    return rc.num_workers * rc.prefetch_factor * batch


def check_remote_rows(result: dict) -> None:
    """Raise when a benchmark delivered failed reads: zero failed reads is the rule."""
    bad = [r["name"] for r in result["rows"] if (r.get("config") or {}).get("failed_samples")]
    if bad:
        raise InputError("remote benchmark", f"failed reads in {bad}")
