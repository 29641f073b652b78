"""`ocog bench compare --remote`: the same comparison from object storage, over an emulated WAN.

The variants' benchmark scenes are read from the one bucket and key layout of
`ocog_lib.remote.session` (`s3://<bucket>/variants/<dataset>/<variant>/<relpath>`: the very
objects the `remote_variants` asset uploads; whatever is missing is uploaded first). The
endpoint is the configured one, else the running embedded server of `ocog s3 serve`, else
one started for this run only. HDF5 packages go to `s3://<bucket>/hdf5/bench/<dataset>/`
(their local folder's path under the data directory). Every loader reads through the WAN
shaper (per-request RTT, shared bandwidth cap). Rows carry the RTT, the cap and bytes on
the wire per sample; the ceilings are the link limit (cap x the variant's compression
ratio, in patches/s) and the decode limit for the same windows. The endpoint's own
throughput on this machine is measured and reported too: past it, no loader can go
faster whatever the cap says.
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from ocog_lib.bench.config import RemoteCompareConfig
from ocog_lib.bench.measure import (
    Measurement,
    config_dict,
    decoded_gib,
    length_for,
    patch_bytes,
    run_ocog,
    run_reference,
)
from ocog_lib.bench.plan import PlannedRun, run_interleaved
from ocog_lib.bench.rows import BenchRow, Comparison, Link, set_content_hashes
from ocog_lib.data.locate import bench_files, variant_content_hash
from ocog_lib.env import gdal_cache_of_config, scoped_env
from ocog_lib.remote.session import RemoteSession, remote_session, shaped_link
from ocog_lib.settings import Settings
from ocog_lib.stream.config import StreamConfig
from ocog_lib.stream.dataset import CogStream
from ocog_lib.stream.footprint import tile_bytes_per_sample
from ocog_lib.stream.rasters import RasterSource, open_raster
from ocog_lib.stream.samplers import link_reuse

# the toolkit's configs: the variant and the sampler each runs on
_REFERENCE_RUNS = {
    "default": ("default", "random"),
    "remote_optimal": ("optimal_remote", "block"),
    "local_optimal": ("optimal_local", "block"),
}


@dataclass(frozen=True)
class _Variants:
    """The variants compared: their local copies (headers parsed once: shapes, tile grids,
    ratios, windows) and the same files' objects in the bucket."""

    cfg: RemoteCompareConfig
    names: tuple[str, ...]
    local: dict[str, list[str]]
    parsed: dict[str, list[RasterSource]]
    uris: dict[str, list[str]]
    patch: dict[str, int]  # decoded bytes of one sample, HDF5 packages' variants included


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
) -> Comparison:
    """ocog vs the reference loader vs the link and decode limits, from object storage."""
    settings = settings or Settings.from_env()
    say = progress or (lambda _m: None)
    cfg = _with_patch_sized_variant(cfg, settings, say)
    names = _variants_of(cfg)
    local = {v: bench_files(cfg.dataset, v, settings)[0] for v in names}
    hashes = {v: variant_content_hash(cfg.dataset, v, settings) for v in names}
    parsed = {v: [open_raster(path) for path in local[v]] for v in names}
    patch = {
        v: patch_bytes(rs[0].bands, cfg.patch_size, rs[0].dtype.itemsize)
        for v, rs in parsed.items()
    }
    with remote_session(settings, bucket=cfg.bucket) as session:
        uris = {v: _upload(session, settings, cfg.dataset, v, local[v], say) for v in names}
        packages = _hdf5_packages(cfg, settings, session, say) if cfg.hdf5 else []
        hdf5_ratio = {}
        for _s, _uri, pkg in packages:
            patch[f"hdf5_{pkg.compression}"] = pkg.image_bytes_per_sample
            hdf5_ratio[f"hdf5_{pkg.compression}"] = pkg.decoded_bytes / max(1, pkg.h5_bytes)
        with scoped_env(session.env()):
            ceiling = _server_ceiling(session.endpoint.url, uris["default"][0])
        say(f"endpoint serves {ceiling:.0f} MB/s unshaped (1 MiB ranges, 16 in flight)")
        variants = _Variants(cfg, names, local, parsed, uris, patch)
        rows: list[BenchRow] = []
        for cap in cfg.caps_mb_s:
            rows += _rows_at_cap(variants, cap, packages, session, say)

    # ceilings per variant and sampler: link (cap x ratio) and decode (same windows, local)
    ratios = {**{v: _ratio(parsed[v]) for v in names}, **hdf5_ratio}
    decode = _decode_limits(variants, say)
    limit_rows = _link_limit_rows(cfg, (*names, *hdf5_ratio), ratios, patch)
    _set_ratios(cfg, rows, ratios, patch, decode)
    set_content_hashes([*rows, *limit_rows], hashes)
    return Comparison(
        run_id=uuid.uuid4().hex[:12],
        dataset=cfg.dataset,
        decoded_gib=decoded_gib(local["default"]),
        cache_mb=cfg.cache_mb,
        config=cfg,
        rows=(*rows, *limit_rows),
        link=Link(rtt_ms=cfg.rtt_ms, caps_mb_s=cfg.caps_mb_s, endpoint_mb_s=ceiling),
    )


def _with_patch_sized_variant(
    cfg: RemoteCompareConfig, settings: Settings, say: Callable[[str], None]
) -> RemoteCompareConfig:
    """`cfg` with the variant whose tiles are the patch size (written if missing)."""
    if not cfg.patch_sized_tiles:
        return cfg
    from ocog_lib.cog.write import ensure_variant

    say(f"variant with {cfg.patch_size}-px tiles")
    name = ensure_variant(cfg.dataset, f"lerc_zstd:level=9,block={cfg.patch_size}", settings)
    return replace(cfg, variants=tuple(dict.fromkeys((*cfg.variants, name))))


def _variants_of(cfg: RemoteCompareConfig) -> tuple[str, ...]:
    """Every variant a row reads: the compared ones, and those the reference configs need."""
    variants = tuple(dict.fromkeys(("default", *cfg.variants)))
    if "remote_optimal" in cfg.reference_configs and "optimal_remote" not in variants:
        variants = (*variants, "optimal_remote")
    return variants


def _upload(
    session: RemoteSession,
    settings: Settings,
    dataset: str,
    variant: str,
    paths: list[str],
    say: Callable[[str], None],
) -> list[str]:
    """The variant's objects in the one layout, uploading those the bucket lacks."""
    folder = settings.variant_dir(dataset, variant)
    uris = []
    for path in paths:
        say(f"upload {Path(path).name} ({variant})")
        uris += session.upload_variant_files(dataset, variant, folder, [path])
    return uris


def _rows_at_cap(
    variants: _Variants,
    cap: float,
    packages: list,
    session: RemoteSession,
    say: Callable[[str], None],
) -> list[BenchRow]:
    """Every loader through a shaper at `cap`, interleaved over repeats."""
    cfg = variants.cfg
    with shaped_link(session, rtt_ms=cfg.rtt_ms, cap_mb_s=cap) as shaper:

        def wire() -> float:
            return float(shaper.counters().bytes_down)

        plan = [
            *_reference_runs(variants, wire),
            *_ocog_runs(variants, cap, wire),
            *_hdf5_runs(cfg, packages, wire),
        ]
        results = run_interleaved(plan, cfg.repeats, say, prefix=f"cap {cap:g} MB/s, ")
    return [
        run.row(ms, _config_at_cap(run, ms, cap, cfg.rtt_ms))
        for run, ms in zip(plan, results, strict=True)
    ]


def _config_at_cap(run: PlannedRun, ms: list[Measurement], cap: float, rtt_ms: float) -> dict:
    # bytes the shaper passed during the timed window, per sample delivered in it
    wires = [m.probe_delta / m.samples for m in ms if m.probe_delta is not None and m.samples]
    return {
        **run.config,
        "cap_mb_s": cap,
        "rtt_ms": rtt_ms,
        "wire_bytes_per_sample": statistics.median(wires) if wires else None,
        "failed_samples": sum(m.skipped for m in ms),
    }


def _reference_runs(variants: _Variants, wire: Callable[[], float]) -> list[PlannedRun]:
    cfg = variants.cfg
    b = cfg.batch_size
    # the reference must not run dry: its start-up (up to a minute with 64 workers), a
    # warm-up as long, the timed window, and every batch its workers hold in flight
    ref_len = length_for(2 * 60 + cfg.seconds, 200, b)
    out = []
    for name in cfg.reference_configs:
        v, sampler = _REFERENCE_RUNS[name]
        run = partial(
            run_reference, variants.uris[v], [], name, length=ref_len + _in_flight(name, b),
            seed=cfg.seed, min_seconds=cfg.seconds, patch_size=cfg.patch_size, batch_size=b,
            warmup_seconds=cfg.warmup_seconds, warmup_covers_startup=True, probe=wire,
        )  # fmt: skip
        config = {"reference_config": name}
        out.append(PlannedRun(f"reference {name}", "reference", v, sampler, run,
                              variants.patch[v], config))  # fmt: skip
    return out


def _ocog_runs(variants: _Variants, cap: float, wire: Callable[[], float]) -> list[PlannedRun]:
    """Per variant and sampler: plain, the engine's own reuse over a link, `best_reuse`."""
    cfg = variants.cfg
    out = []
    for v in cfg.variants:
        r0 = variants.parsed[v][0]
        for s in cfg.samplers:
            auto = link_reuse(s, cfg.patch_size, r0.tile_height, r0.tile_width)
            for reuse in dict.fromkeys((1, auto, max(1, cfg.best_reuse))):
                out.append(_ocog_run(variants, v, s, reuse, reuse == auto, cap, wire))
    return out


def _ocog_run(
    variants: _Variants,
    v: str,
    s: str,
    reuse: int,
    auto: bool,
    cap: float,
    wire: Callable[[], float],
) -> PlannedRun:
    cfg = variants.cfg
    b = cfg.batch_size
    sc = StreamConfig(
        sampler=s,
        patch_size=cfg.patch_size,
        batch_size=b,
        seed=cfg.seed,
        cache_mb=cfg.cache_mb,
        patches_per_tile=reuse,
        shuffle_tiles=32,
        io_threads=cfg.io_threads,
        prefetch=4,
        channels_last=cfg.channels_last,
        length=length_for(cfg.seconds, 3000, b),
    )
    label = f"ocog {s}" + (f" reuse x{reuse}" if reuse > 1 else "")
    label += " (auto)" if auto and reuse > 1 else ""
    label += " channels_last" if cfg.channels_last else ""
    resolved, layout = _layout(variants.local[v], variants.parsed[v], sc)
    run = partial(
        run_ocog, variants.uris[v], [], sc, min_seconds=cfg.seconds,
        warmup_seconds=cfg.warmup_seconds, warmup_covers_startup=True, probe=wire,
    )  # fmt: skip
    config = {
        **config_dict(resolved),  # shuffle group as capped
        "auto_reuse": auto,
        "layout_bytes_per_sample": layout,
        "layout_limit_sps": cap * 1e6 / layout if layout else None,
    }
    return PlannedRun(label, "ocog", v, s, run, variants.patch[v], config)


def _layout(
    images: list[str], rasters: list[RasterSource], sc: StreamConfig
) -> tuple[StreamConfig, float | None]:
    """The row's config as the engine resolves it (on the same files, stored locally), and
    the tile bytes per sample its windows need with no cache beyond a shuffle group."""
    stream = CogStream(images, None, sc, rasters=rasters)
    k = stream.cfg.patches_per_tile
    group = stream.cfg.shuffle_tiles * k if k > 1 else 1
    return stream.cfg, tile_bytes_per_sample(stream.windows, stream.rasters, sc.patch_size, group)


def _hdf5_packages(
    cfg: RemoteCompareConfig, settings: Settings, session: RemoteSession, say
) -> list:
    """Packages of the windows our plain rows stream, exported locally and uploaded."""
    from ocog_lib.bench.config import CompareConfig, Hdf5BenchConfig
    from ocog_lib.bench.hdf5 import remote_key_prefix, remote_packages
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
        lambda path, uri: upload_file(path, uri, client=session.client),
        session.endpoint.uri(remote_key_prefix(cfg.dataset)),
        say,
    )


def _hdf5_runs(
    cfg: RemoteCompareConfig, packages: list, wire: Callable[[], float]
) -> list[PlannedRun]:
    """One run per package: read through the shaper by DataLoader worker processes."""
    from ocog_lib.bench.hdf5 import SOURCE_VARIANT, measure_package

    out = []
    for s, uri, pkg in packages:
        run = partial(
            measure_package, uri, batch_size=cfg.batch_size, workers=cfg.hdf5_workers,
            seconds=cfg.seconds, warmup_seconds=cfg.warmup_seconds,
            warmup_covers_startup=True, probe=wire,
        )  # fmt: skip
        config = {
            "compression": pkg.compression,
            "workers": cfg.hdf5_workers,
            "batch_size": cfg.batch_size,
            "samples": pkg.samples,
            "package": uri,
            "h5_bytes": pkg.h5_bytes,
            "source_variant": SOURCE_VARIANT,
            "storage": "remote",
        }
        name = f"hdf5 {pkg.compression} {s}"
        out.append(PlannedRun(name, "hdf5", f"hdf5_{pkg.compression}", s, run,
                              pkg.image_bytes_per_sample, config, title=name,
                              content_hash=pkg.content_hash))  # fmt: skip
    return out


def _decode_limits(variants: _Variants, say: Callable[[str], None]) -> dict[tuple[str, str], float]:
    """Decode limit (samples/s) per compressed variant and sampler, on the local copies."""
    from ocog_lib.bench.limits import decode_limit

    cfg, p = variants.cfg, variants.cfg.patch_size
    threads = os.cpu_count() or 1
    out = {}
    for v in variants.names:
        r0 = variants.parsed[v][0]
        if r0.index is None or r0.index.compression == 1:
            continue
        for s in cfg.samplers:
            sc = StreamConfig(sampler=s, patch_size=p, length=128, seed=cfg.seed)
            wins = CogStream(variants.local[v], None, sc, rasters=variants.parsed[v]).windows
            say(f"decode limit: {s} on {v}")
            out[(v, s)] = decode_limit(
                variants.local[v], wins, p, threads=threads, min_seconds=max(0.5, cfg.seconds / 2)
            ).samples_per_s
    return out


def _link_limit_rows(
    cfg: RemoteCompareConfig,
    variants: tuple[str, ...],
    ratios: dict[str, float],
    patch: dict[str, int],
) -> list[BenchRow]:
    out = []
    for cap in cfg.caps_mb_s:
        for v in variants:
            link = cap * 1e6 * ratios[v] / patch[v]
            out.append(
                BenchRow(
                    name="link limit",
                    loader="link_limit",
                    variant=v,
                    sampler="-",
                    samples_per_s=link,
                    mb_per_s=link * patch[v] / 1e6,
                    config={"cap_mb_s": cap, "rtt_ms": cfg.rtt_ms, "compression_ratio": ratios[v]},
                )
            )
    return out


def _set_ratios(
    cfg: RemoteCompareConfig,
    rows: list[BenchRow],
    ratios: dict[str, float],
    patch: dict[str, int],
    decode: dict[tuple[str, str], float],
) -> None:
    """Each row against its ceiling (the lower of link and decode limit) and against the
    reference default at its own cap (else at the first cap)."""
    refs = [r for r in rows if r.name == "reference default"]
    first = next((r for r in refs if r.config.get("cap_mb_s") == cfg.caps_mb_s[0]), None)
    for row in rows:
        cap = row.config["cap_mb_s"]
        link = cap * 1e6 * ratios[row.variant] / patch[row.variant]
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
        same_cap = next((r for r in refs if r.config["cap_mb_s"] == cap), first)
        if same_cap is not None:
            row.ratio_vs_reference_default = row.samples_per_s / same_cap.samples_per_s


def _in_flight(reference_config: str, batch: int) -> int:
    """Samples the reference's workers may hold requested at once (workers x prefetch)."""
    from ocog_lib.bench.reference import REFERENCE_CONFIGS

    rc = REFERENCE_CONFIGS[reference_config]
    return rc.num_workers * rc.prefetch_factor * batch
