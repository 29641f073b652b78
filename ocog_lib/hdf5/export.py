"""COG windows to an HDF5 training package in the MMEarth layout (docs/hdf5.md).

The windows come from the engine's samplers and the pixels from the engine itself
(`CogStream.iter_batches`), so a package holds exactly what training on the COGs sees.

Splits are spatial: each window belongs to the coarse block (`split_block` px) of its
centre; blocks are dealt in a seeded order, each to the split furthest below its share of
samples (so a split can stay empty when there are only a few blocks), and (with
`split_guard`) a window reaching into a block of another split is left out, so no two
windows of different splits overlap.

Writes are atomic: the .h5 and the sidecars go to temporary names; at the end the old .h5
(the package's commit marker) is removed, the sidecars renamed, then the .h5 renamed. A
crash leaves the old package, or none, never a new .h5 with half its sidecars; the .h5
records each sidecar's sha256, so mismatched files are caught on open. Last comes the
package's content manifest (`<name>.h5.content.json`, data.lineage): the content hash
every measurement of the package names (the old one goes before the write starts).

Idempotence: an export whose fingerprint (config, windows, source paths with size and
mtime) matches the one recorded in an existing, complete package is skipped; a forced
re-export of the same inputs writes the same bytes (no timestamps in the file).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ocog_lib import __version__
from ocog_lib.atomic import atomic_path
from ocog_lib.data.lineage import package_hash, package_manifest_path, write_package_manifest
from ocog_lib.data.locate import variant_folder
from ocog_lib.data.manifest import DatasetManifest
from ocog_lib.errors import InputError
from ocog_lib.hdf5 import layout as L
from ocog_lib.settings import Settings

DEFAULT_RANDOM_SAMPLES = 1024
SCENE_DATE_TAGS = ("OCOG_SCENE_DATE", "SCENE_DATE", "ACQUISITION_DATE", "DATE_ACQUIRED")


@dataclass(frozen=True)
class SourceScene:
    """One image COG (and its label COG) that windows are cut from."""

    name: str
    image: str
    mask: str | None = None
    tile_id: str = ""
    sensor: str = ""
    scene_date: str = ""  # ISO date if known; else read from the image's tags, else ""


@dataclass(frozen=True)
class ExportConfig:
    patch_size: int = 256
    sampler: str = "grid"  # grid (full coverage), random or block (the engine's samplers)
    samples: int = 0  # 0: grid = every window, random/block = 1024; grid > 0: seeded subset
    seed: int = 0
    compression: str = "gzip"  # gzip | lzf | none
    gzip_level: int = 4
    shuffle: bool = True  # HDF5 byte-shuffle before compression (helps uint16)
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train, val, test
    split_block: int = 0  # px edge of a split block; 0 = 4 x patch_size
    split_guard: bool = True  # leave out windows reaching into a block of another split
    stats_samples: int = 256  # samples (seeded) band_stats are computed on
    batch_size: int = 32  # engine batches while exporting (no effect on the output)
    threads: int = 0  # engine decode threads (0 = all cores; no effect on the output)

    def __post_init__(self) -> None:
        if self.compression not in L.COMPRESSIONS:
            raise InputError(f"compression {self.compression!r}", f"choose one of {L.COMPRESSIONS}")
        if self.patch_size < 1 or self.samples < 0 or self.stats_samples < 1:
            raise InputError("export config", "patch_size and stats_samples must be positive")
        fr = self.split_fractions
        if len(fr) != 3 or min(fr) < 0 or abs(sum(fr) - 1.0) > 1e-6:
            raise InputError(f"split_fractions {fr}", "need three non-negative parts summing to 1")
        if not 0 <= self.gzip_level <= 9:
            raise InputError(f"gzip_level {self.gzip_level}", "must be 0..9")

    @property
    def block(self) -> int:
        return self.split_block or 4 * self.patch_size

    def output_relevant(self) -> dict:
        d = asdict(self)
        for k in ("batch_size", "threads"):
            d.pop(k)
        return d


@dataclass
class ExportResult:
    path: Path
    sidecars: dict[str, Path]
    samples: int
    dropped: int  # windows the split guard left out
    modalities: dict[str, list[int]]  # full shapes
    splits: dict[str, int]  # samples per split
    h5_bytes: int
    sidecar_bytes: int
    decoded_bytes: int  # pixels in the source dtype
    source_bytes: int  # bytes of the COG files the windows were cut from
    seconds: float
    skipped: bool
    fingerprint: str
    compression: str = "gzip"
    image_bytes_per_sample: int = 0  # one sample of the image modality, decoded
    extra: dict = field(default_factory=dict)
    content_hash: str | None = None  # of the .h5 and its sidecars (data.lineage)

    @property
    def bytes(self) -> int:
        return self.h5_bytes + self.sidecar_bytes

    @property
    def ratio_to_cog_bytes(self) -> float:
        return self.h5_bytes / self.source_bytes if self.source_bytes else 0.0

    @property
    def compression_ratio(self) -> float:
        return self.decoded_bytes / self.h5_bytes if self.h5_bytes else 0.0

    def summary(self) -> dict:
        return {
            "path": str(self.path),
            "sidecars": {k: str(v) for k, v in self.sidecars.items()},
            "samples": self.samples,
            "dropped_by_split_guard": self.dropped,
            "modalities": self.modalities,
            "splits": self.splits,
            "h5_bytes": self.h5_bytes,
            "bytes": self.bytes,
            "decoded_bytes": self.decoded_bytes,
            "source_bytes": self.source_bytes,
            "ratio_to_cog_bytes": self.ratio_to_cog_bytes,
            "compression_ratio": self.compression_ratio,
            "compression": self.compression,
            "seconds": self.seconds,
            "skipped": self.skipped,
            "fingerprint": self.fingerprint,
            "content_hash": self.content_hash,
        }


# ---- sources ------------------------------------------------------------------------------


def scenes_from_manifest(
    manifest: DatasetManifest, roles: tuple[str, ...] = ("scene",)
) -> list[SourceScene]:
    items = [i for i in manifest.items if i.role in roles]
    if not items:
        have = sorted({i.role for i in manifest.items})
        raise InputError(manifest.dataset, f"no items with role {list(roles)} (it has {have})")
    return [
        SourceScene(
            name=i.name,
            image=str(manifest.image_path(i)),
            mask=str(manifest.mask_path(i)) if i.mask else None,
            tile_id=i.tile_id,
            sensor=i.sensor,
        )
        for i in items
    ]


def dataset_folder(settings: Settings, dataset: str, variant: str = "") -> Path:
    """The prepared dataset (variant "") or one of its written COG variants."""
    if not variant:
        return settings.prepared_dir(dataset)
    return variant_folder(dataset, variant, settings)


def default_output(settings: Settings, dataset: str) -> Path:
    """data/hdf5/<dataset>/data_<dataset>.h5 (MMEarth's `data_*.h5` naming)."""
    return settings.data_dir / "hdf5" / dataset / f"data_{dataset}.h5"


def export_dataset(
    settings: Settings,
    dataset: str,
    output: str | os.PathLike[str] | None = None,
    config: ExportConfig | None = None,
    *,
    variant: str = "",
    roles: tuple[str, ...] = ("scene",),
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> ExportResult:
    """A prepared dataset (or one COG variant of it) to a package."""
    manifest = DatasetManifest.load(dataset_folder(settings, dataset, variant))
    return export_hdf5(
        scenes_from_manifest(manifest, roles),
        output or default_output(settings, dataset),
        config,
        dataset=manifest.dataset,
        classes=manifest.classes,
        ignore_index=manifest.ignore_index,
        force=force,
        progress=progress,
    )


# ---- windows and splits ---------------------------------------------------------------------


def choose_windows(windows: np.ndarray, cfg: ExportConfig) -> np.ndarray:
    """A seeded subset of a grid's windows (raster order kept) when `samples` asks for one."""
    if cfg.sampler != "grid" or not cfg.samples or cfg.samples >= len(windows):
        return windows
    rng = np.random.default_rng(cfg.seed)
    keep = np.sort(rng.choice(len(windows), size=cfg.samples, replace=False))
    return windows[keep]


def assign_splits(windows: np.ndarray, cfg: ExportConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per window: its split (0 train, 1 val, 2 test) and whether the guard keeps it."""
    n = len(windows)
    b, p = cfg.block, cfg.patch_size
    half = p // 2
    keys = np.stack(
        [windows[:, 0], (windows[:, 1] + half) // b, (windows[:, 2] + half) // b], axis=1
    )
    blocks, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    rng = np.random.default_rng(cfg.seed)
    # blocks in a seeded order, each to the split furthest below its share of samples
    targets = np.asarray(cfg.split_fractions, dtype=np.float64) * n
    filled = np.zeros(3)
    block_split = np.zeros(len(blocks), dtype=np.int8)
    for bi in rng.permutation(len(blocks)):
        s = int(np.argmax(targets - filled))
        block_split[bi] = s
        filled[s] += counts[bi]
    split = block_split[inverse]
    keep = np.ones(n, dtype=bool)
    if cfg.split_guard:
        keep = _guard(windows, split, blocks, block_split, b, p)
    return split, keep


def _guard(
    windows: np.ndarray,
    split: np.ndarray,
    blocks: np.ndarray,
    block_split: np.ndarray,
    b: int,
    p: int,
) -> np.ndarray:
    """Keep a window only where no block it touches is touched by another split.

    A block holding window centres belongs to their split; a block holding none goes to
    the split with most windows reaching into it (ties: train, val, test), so no pixel is
    ever covered by windows of two splits.
    """
    owner = {tuple(k): int(s) for k, s in zip(blocks.tolist(), block_split, strict=True)}
    touched: list[list[tuple[int, int, int]]] = []
    keep = np.ones(len(windows), dtype=bool)
    reach: dict[tuple[int, int, int], np.ndarray] = {}
    for i, (f, row, col) in enumerate(windows.tolist()):
        cells = [
            (f, by, bx)
            for by in range(row // b, (row + p - 1) // b + 1)
            for bx in range(col // b, (col + p - 1) // b + 1)
        ]
        touched.append(cells)
        for cell in cells:
            s = owner.get(cell)
            if s is None:
                reach.setdefault(cell, np.zeros(3, dtype=np.int64))[split[i]] += 1
            elif s != split[i]:
                keep[i] = False
    unowned = {cell: int(np.argmax(votes)) for cell, votes in reach.items()}
    for i, cells in enumerate(touched):
        if keep[i] and any(unowned.get(c, split[i]) != split[i] for c in cells):
            keep[i] = False
    return keep


# ---- band statistics ------------------------------------------------------------------------


class BandStats:
    """Per-band count, mean, M2, min, max over valid pixels, merged sample by sample."""

    def __init__(self, bands: int, invalid: int | None):
        self.invalid = invalid
        self.n = np.zeros(bands, dtype=np.int64)
        self.mean = np.zeros(bands, dtype=np.float64)
        self.m2 = np.zeros(bands, dtype=np.float64)
        self.lo = np.full(bands, np.inf)
        self.hi = np.full(bands, -np.inf)

    def add(self, sample: np.ndarray) -> None:
        """One sample, (C, H, W)."""
        for c in range(sample.shape[0]):
            v = sample[c].ravel()
            if self.invalid is not None:
                v = v[v != self.invalid]
            if v.size == 0:
                continue
            v = v.astype(np.float64)
            nb, mb = v.size, float(v.mean())
            m2b = float(((v - mb) ** 2).sum())
            na = int(self.n[c])
            tot = na + nb
            delta = mb - self.mean[c]
            self.mean[c] += delta * nb / tot
            self.m2[c] += m2b + delta * delta * na * nb / tot
            self.n[c] = tot
            self.lo[c] = min(self.lo[c], float(v.min()))
            self.hi[c] = max(self.hi[c], float(v.max()))

    def as_dict(self) -> dict[str, list]:
        ok = self.n > 0
        std = np.sqrt(np.where(ok, self.m2 / np.maximum(self.n, 1), 0.0))
        return {
            "mean": [float(x) if o else 0.0 for x, o in zip(self.mean, ok, strict=True)],
            "std": [float(x) for x in std],
            "min": [float(x) if o else 0.0 for x, o in zip(self.lo, ok, strict=True)],
            "max": [float(x) if o else 0.0 for x, o in zip(self.hi, ok, strict=True)],
            "count": [int(x) for x in self.n],
        }


# ---- the export -----------------------------------------------------------------------------


def fingerprint(
    scenes: list[SourceScene],
    cfg: ExportConfig,
    windows: np.ndarray | None,
    extra: dict,
) -> str:
    """What the package's bytes depend on: config, sources (path, size, mtime), windows."""
    files = []
    for s in scenes:
        for p in (s.image, s.mask):
            if p:
                st = Path(p).stat()
                files.append([p, st.st_size, st.st_mtime_ns])
    doc = {
        "format_version": L.FORMAT_VERSION,
        "config": cfg.output_relevant(),
        "scenes": [asdict(s) for s in scenes],
        "files": files,
        "windows": hashlib.sha256(np.ascontiguousarray(windows, dtype="<i8")).hexdigest()
        if windows is not None
        else None,
        **extra,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _scene_facts(scene: SourceScene) -> dict:
    import rasterio

    try:
        with rasterio.open(scene.image) as ds:
            tags = ds.tags()
            date = scene.scene_date or next((tags[k] for k in SCENE_DATE_TAGS if tags.get(k)), "")
            return {
                "name": scene.name,
                "image": scene.image,
                "mask": scene.mask or "",
                "tile_id": scene.tile_id or scene.name,
                "sensor": scene.sensor,
                "scene_date": date,
                "crs": ds.crs.to_string() if ds.crs else "",
                "transform": [float(x) for x in tuple(ds.transform)[:6]],
                "height": ds.height,
                "width": ds.width,
                "bands": ds.count,
                "dtype": ds.dtypes[0],
                "nodata": ds.nodata,
                "band_names": [d or f"band_{i + 1}" for i, d in enumerate(ds.descriptions)],
            }
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(scene.image, f"cannot be read ({exc})") from exc


def _metadata_dtype(facts: list[dict]) -> np.dtype:
    fields = []
    for name in L.METADATA_FIELDS:
        if name in L.METADATA_INTS:
            fields.append((name, L.METADATA_INTS[name]))
        else:
            key = "name" if name == "item" else name
            width = max([1, *(len(str(f[key]).encode()) for f in facts)])
            fields.append((name, f"S{width}"))
    return np.dtype(fields)


def _tile_info(facts: list[dict], windows: np.ndarray) -> dict:
    counts = np.bincount(windows[:, 0], minlength=len(facts)) if len(windows) else []
    info: dict[str, dict] = {}
    for i, f in enumerate(facts):
        tile = info.setdefault(
            f["tile_id"],
            {
                "sensor": f["sensor"],
                "scene_date": f["scene_date"],
                "crs": f["crs"],
                "samples": 0,
                "items": {},
            },
        )
        tile["samples"] += int(counts[i])
        tile["items"][f["name"]] = {
            "file": i,
            "image": f["image"],
            "mask": f["mask"],
            "crs": f["crs"],
            "transform": f["transform"],
            "height": f["height"],
            "width": f["width"],
            "scene_date": f["scene_date"],
            "samples": int(counts[i]),
        }
    return info


def _sidecar_ok(path: Path, recorded: dict) -> bool:
    """Every sidecar the .h5 records exists with the recorded sha256."""
    for kind in L.SIDECARS:
        entry = recorded.get(kind)
        side = Path(L.sidecar_uri(str(path), kind))
        if not entry or not side.exists():
            return False
        if hashlib.sha256(side.read_bytes()).hexdigest() != entry["sha256"]:
            return False
    return True


def existing_result(path: Path, fp: str) -> ExportResult | None:
    """The result of a complete package at `path` made from the same inputs, else None."""
    import h5py

    if not path.exists():
        return None
    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
            if attrs.get(L.ATTR_FINGERPRINT) != fp:
                return None
            recorded = json.loads(attrs[L.ATTR_SIDECARS])
            shapes = {k: list(f[k].shape) for k in json.loads(attrs[L.ATTR_MODALITIES])}
            stats = json.loads(attrs["export_stats"])
    except (OSError, KeyError, ValueError):
        return None
    if not _sidecar_ok(path, recorded):
        return None
    sidecars = {k: Path(L.sidecar_uri(str(path), k)) for k in L.SIDECARS}
    try:
        content = package_hash(path, list(sidecars.values()))
    except InputError:  # its bytes are not the ones written: export it again
        return None
    return ExportResult(
        path=path,
        sidecars=sidecars,
        samples=stats["samples"],
        dropped=stats["dropped"],
        modalities=shapes,
        splits=stats["splits"],
        h5_bytes=path.stat().st_size,
        sidecar_bytes=sum(p.stat().st_size for p in sidecars.values()),
        decoded_bytes=stats["decoded_bytes"],
        source_bytes=stats["source_bytes"],
        seconds=0.0,
        skipped=True,
        fingerprint=fp,
        compression=stats["compression"],
        image_bytes_per_sample=stats["image_bytes_per_sample"],
        content_hash=content,
    )


@dataclass
class _Plan:
    """Everything the package will hold except the pixels."""

    facts: list[dict]
    windows: np.ndarray
    split: np.ndarray
    dropped: int
    image_key: str
    label_key: str
    dtype: np.dtype
    bands: int
    patch: int
    nodata: int

    @property
    def shapes(self) -> dict[str, list[int]]:
        n, c, p = len(self.windows), self.bands, self.patch
        out = {self.image_key: [n, c, p, p]}
        if self.label_key:
            out[self.label_key] = [n, 1, p, p]
        return out

    @property
    def image_bytes_per_sample(self) -> int:
        return self.bands * self.patch * self.patch * self.dtype.itemsize

    @property
    def decoded_bytes(self) -> int:
        label = self.patch * self.patch if self.label_key else 0
        return len(self.windows) * (self.image_bytes_per_sample + label)


def export_hdf5(
    scenes: list[SourceScene],
    output: str | os.PathLike[str],
    config: ExportConfig | None = None,
    *,
    windows: np.ndarray | None = None,
    dataset: str = "",
    classes: dict[int, str] | None = None,
    ignore_index: int = 255,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> ExportResult:
    """Cut windows from `scenes` with the engine and write one package at `output`.

    `windows` ((N, 3) file, row, col into `scenes`) overrides the config's sampler.
    """
    cfg = config or ExportConfig()
    say = progress or (lambda _msg: None)
    output = Path(output)
    _check_sources(scenes, output)
    meta = {"dataset": dataset, "classes": classes, "ignore_index": ignore_index}
    fp = fingerprint(scenes, cfg, windows, meta)
    if not force and (done := existing_result(output, fp)) is not None:
        say(f"{output}: up to date (fingerprint {fp[:12]}), skipped")
        return done

    t0 = time.perf_counter()
    stream = _export_stream(scenes, cfg, windows)
    try:
        plan = _plan(scenes, cfg, stream.windows if windows is None else windows, windows is None)
        if len(plan.windows) == 0:
            raise InputError(output, "no windows left to export (all left out by the split guard)")
        say(
            f"{output}: {len(plan.windows)} samples of {cfg.patch_size} px "
            f"({plan.dropped} left out by the split guard)"
        )
        splits = _split_members(plan)
        stats = _export_stats(scenes, cfg, plan, splits)
        attrs = _package_attrs(plan, cfg, stats, fp, meta, windows_given=windows is not None)
        sidecars = _write_package(output, plan, cfg, stream, splits, attrs, ignore_index, say)
    finally:
        stream.close()
    return ExportResult(
        path=output,
        sidecars=sidecars,
        samples=len(plan.windows),
        dropped=plan.dropped,
        modalities=plan.shapes,
        splits=stats["splits"],
        h5_bytes=output.stat().st_size,
        sidecar_bytes=sum(v.stat().st_size for v in sidecars.values()),
        decoded_bytes=plan.decoded_bytes,
        source_bytes=stats["source_bytes"],
        seconds=time.perf_counter() - t0,
        skipped=False,
        fingerprint=fp,
        compression=cfg.compression,
        image_bytes_per_sample=plan.image_bytes_per_sample,
        content_hash=package_hash(output, list(sidecars.values())),  # written just now
    )


def _check_sources(scenes: list[SourceScene], output: Path) -> None:
    if output.suffix not in (".h5", ".hdf5"):
        raise InputError(output, "a package name ends in .h5 (or .hdf5)")
    if not scenes:
        raise InputError(output, "no source scenes to export")
    for s in scenes:
        for p in (s.image, s.mask):
            if p and not Path(p).exists():
                raise InputError(p, f"source of scene '{s.name}' not found")


def _split_members(plan: _Plan) -> dict[str, list[int]]:
    """The sample indices of each split, as the splits sidecar holds them."""
    return {
        name: np.flatnonzero(plan.split == code).tolist()
        for code, name in ((0, "train"), (1, "val"), (2, "test"))
    }


def _export_stream(scenes: list[SourceScene], cfg: ExportConfig, windows: np.ndarray | None):
    """The engine over the scenes: its sampler picks the windows unless they are given."""
    from ocog_lib.stream.config import StreamConfig
    from ocog_lib.stream.dataset import CogStream

    labelled = all(s.mask for s in scenes)
    return CogStream(
        [s.image for s in scenes],
        [s.mask for s in scenes] if labelled else None,
        StreamConfig(
            sampler=cfg.sampler if windows is None else "random",
            patch_size=cfg.patch_size,
            batch_size=cfg.batch_size,
            length=(cfg.samples or DEFAULT_RANDOM_SAMPLES) if windows is None else 1,
            seed=cfg.seed,
            threads=cfg.threads,
            pin_memory=False,
        ),
    )


def _export_stats(
    scenes: list[SourceScene], cfg: ExportConfig, plan: _Plan, splits: dict[str, list[int]]
) -> dict:
    """What the export made, recorded in the package (and read back by a skipped export)."""
    source_bytes = sum(Path(x).stat().st_size for s in scenes for x in (s.image, s.mask) if x)
    return {
        "samples": len(plan.windows),
        "dropped": plan.dropped,
        "splits": {k: len(v) for k, v in splits.items()},
        "decoded_bytes": plan.decoded_bytes,
        "source_bytes": source_bytes,
        "compression": cfg.compression,
        "image_bytes_per_sample": plan.image_bytes_per_sample,
    }


def _package_attrs(
    plan: _Plan, cfg: ExportConfig, stats: dict, fp: str, meta: dict, *, windows_given: bool
) -> dict:
    """The .h5's root attributes (docs/hdf5.md); `meta`: dataset, classes, ignore_index."""
    return {
        L.ATTR_FORMAT: L.FORMAT,
        L.ATTR_VERSION: L.FORMAT_VERSION,
        "dataset": meta["dataset"],
        L.ATTR_MODALITIES: L.attr_json(
            {
                k: {"shape": v[1:], "dtype": "uint8" if k == L.LABEL else plan.dtype.name}
                for k, v in plan.shapes.items()
            }
        ),
        L.ATTR_IMAGE: plan.image_key,
        L.ATTR_LABEL: plan.label_key,
        "band_names": L.attr_json({plan.image_key: plan.facts[0]["band_names"]}),
        L.ATTR_NODATA: plan.nodata,
        L.ATTR_IGNORE: int(meta["ignore_index"]),
        L.ATTR_CLASSES: L.attr_json({str(k): v for k, v in (meta["classes"] or {}).items()}),
        L.ATTR_PATCH: plan.patch,
        L.ATTR_SCENES: L.attr_json(
            [{k: f[k] for k in ("name", "image", "mask", "tile_id")} for f in plan.facts]
        ),
        L.ATTR_FINGERPRINT: fp,
        "export_config": L.attr_json(cfg.output_relevant()),
        "export_stats": L.attr_json(stats),
        "windows_given": windows_given,
        "ocog_version": __version__,
    }


def _plan(
    scenes: list[SourceScene], cfg: ExportConfig, windows: np.ndarray, sampled: bool
) -> _Plan:
    facts = [_scene_facts(s) for s in scenes]
    first = facts[0]
    for f in facts[1:]:
        if (f["bands"], f["dtype"]) != (first["bands"], first["dtype"]):
            raise InputError(
                f["image"],
                f"{f['bands']} bands {f['dtype']} differs from {first['image']} "
                f"({first['bands']} bands {first['dtype']}); one package holds one layout",
            )
    wins = (
        choose_windows(windows, cfg)
        if sampled
        else _checked_windows(np.asarray(windows), facts, cfg.patch_size)
    )
    split, keep = assign_splits(wins, cfg)
    return _Plan(
        facts=facts,
        windows=wins[keep],
        split=split[keep],
        dropped=int((~keep).sum()),
        image_key=L.image_modality_for([s.sensor for s in scenes]),
        label_key=L.LABEL if all(s.mask for s in scenes) else "",
        dtype=np.dtype(first["dtype"]),
        bands=first["bands"],
        patch=cfg.patch_size,
        nodata=int(first["nodata"]) if first["nodata"] is not None else 0,
    )


def _write_package(
    output: Path,
    plan: _Plan,
    cfg: ExportConfig,
    stream,
    splits: dict[str, list[int]],
    attrs: dict,
    ignore_index: int,
    say: Callable[[str], None],
) -> dict[str, Path]:
    """Pixels, metadata and sidecars under temporary names, then the commit (see module doc)."""
    import h5py

    finals = {k: Path(L.sidecar_uri(str(output), k)) for k in L.SIDECARS}
    package_manifest_path(output).unlink(missing_ok=True)  # the hash of the old bytes
    with contextlib.ExitStack() as commit:
        tmp_h5 = commit.enter_context(atomic_path(output))
        tmps = {k: commit.enter_context(atomic_path(v)) for k, v in finals.items()}
        with h5py.File(tmp_h5, "w", libver=("v110", "latest")) as h5:
            band_stats = _write_samples(h5, output, plan, cfg, stream, ignore_index, say)
            h5.create_dataset(L.METADATA, data=_metadata(plan.facts, plan.windows, plan.patch))
            texts = {
                "band_stats": L.dumps(band_stats),
                "splits": L.dumps(splits),
                "tile_info": L.dumps(_tile_info(plan.facts, plan.windows)),
            }
            recorded = {
                k: {"name": finals[k].name, "sha256": hashlib.sha256(t.encode()).hexdigest()}
                for k, t in texts.items()
            }
            for k, v in {**attrs, L.ATTR_SIDECARS: L.attr_json(recorded)}.items():
                h5.attrs[k] = v
        for kind, text in texts.items():
            tmps[kind].write_text(text)
        # commit: drop the old marker now; the exits then rename sidecars, the .h5 last
        output.unlink(missing_ok=True)
    write_package_manifest(output, list(finals.values()))  # its content hash (data.lineage)
    return finals


def _write_samples(
    h5,
    output: Path,
    plan: _Plan,
    cfg: ExportConfig,
    stream,
    ignore_index: int,
    say: Callable[[str], None],
) -> dict[str, dict]:
    """Every window's pixels from the engine into the image (and label) datasets; the band
    stats of a seeded subset of them, per modality."""
    n = len(plan.windows)
    rng = np.random.default_rng(cfg.seed)
    stats_idx = set(rng.choice(n, size=min(n, cfg.stats_samples), replace=False).tolist())
    img_stats = BandStats(plan.bands, plan.nodata)
    lab_stats = BandStats(1, int(ignore_index)) if plan.label_key else None
    image, label = _create_datasets(h5, plan, cfg)
    chunks = [plan.windows[i : i + cfg.batch_size] for i in range(0, n, cfg.batch_size)]
    at = 0
    with ChunkWriter(cfg) as writer:
        for batch in stream.iter_batches(chunks):
            img = batch["image"].numpy()
            nb = img.shape[0]
            writer.write(image, at, img)
            mask = batch["mask"].numpy() if label is not None else None
            if label is not None:
                writer.write(label, at, mask[:, None])
            for j in range(nb):
                if at + j in stats_idx:
                    img_stats.add(img[j])
                    if lab_stats is not None:
                        lab_stats.add(mask[j][None])
            at += nb
            if at % (cfg.batch_size * 32) == 0:
                say(f"{output}: {at}/{n} samples")
    band_stats = {plan.image_key: img_stats.as_dict()}
    if lab_stats is not None:
        band_stats[plan.label_key] = lab_stats.as_dict()
    return band_stats


def _create_datasets(h5, plan: _Plan, cfg: ExportConfig) -> tuple:
    """The image dataset and the label one (None without labels): one chunk per sample."""
    n, p, c = len(plan.windows), plan.patch, plan.bands
    filters = _filters(cfg)
    image = h5.create_dataset(
        plan.image_key,
        shape=(n, c, p, p),
        dtype=plan.dtype.newbyteorder("<"),
        chunks=(1, c, p, p),
        **filters,
    )
    image.attrs["band_names"] = L.attr_json(plan.facts[0]["band_names"])
    label = None
    if plan.label_key:
        label = h5.create_dataset(
            plan.label_key, shape=(n, 1, p, p), dtype="u1", chunks=(1, 1, p, p), **filters
        )
    return image, label


class ChunkWriter:
    """Writes samples as whole chunks, encoding gzip on threads (zlib releases the GIL).

    h5py runs the filter pipeline on one thread under its lock; here each sample's chunk is
    encoded exactly as HDF5's shuffle + deflate filters would (same zlib, same bytes) on a
    thread pool and written with `write_direct_chunk`. Uncompressed chunks go the same
    direct way; lzf (no Python encoder) goes through h5py's pipeline.
    """

    def __init__(self, cfg: ExportConfig):
        self.cfg = cfg
        self.pool = None
        if cfg.compression == "gzip":
            workers = cfg.threads or (os.cpu_count() or 1)
            self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ocog-h5")

    def _encode(self, sample: np.ndarray) -> bytes:
        data = np.ascontiguousarray(sample).view(np.uint8)
        size = sample.dtype.itemsize
        if self.cfg.shuffle and size > 1:
            data = np.ascontiguousarray(data.reshape(-1, size).T)
        return zlib.compress(data.tobytes(), self.cfg.gzip_level)

    def write(self, dset, at: int, samples: np.ndarray) -> None:
        """samples: (B, *chunk shape), written to dset[at : at + B]."""
        samples = np.ascontiguousarray(samples, dtype=dset.dtype)
        if self.cfg.compression == "lzf":
            dset[at : at + len(samples)] = samples
            return
        tail = (0,) * (samples.ndim - 1)
        if self.pool is None:
            blobs = (s.tobytes() for s in samples)
        else:
            blobs = self.pool.map(self._encode, list(samples))
        for j, blob in enumerate(blobs):
            dset.id.write_direct_chunk((at + j, *tail), blob, 0)

    def __enter__(self) -> ChunkWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


def _filters(cfg: ExportConfig) -> dict:
    if cfg.compression == "none":
        return {}
    opts = {"compression": cfg.compression, "shuffle": cfg.shuffle}
    if cfg.compression == "gzip":
        opts["compression_opts"] = cfg.gzip_level
    return opts


def _metadata(facts: list[dict], wins: np.ndarray, patch: int) -> np.ndarray:
    out = np.zeros(len(wins), dtype=_metadata_dtype(facts))
    files = wins[:, 0]
    for name in ("tile_id", "item", "sensor", "scene_date", "crs"):
        key = "name" if name == "item" else name
        table = np.array([str(f[key]).encode() for f in facts], dtype=out.dtype[name])
        out[name] = table[files]
    out["file"] = files
    out["row"] = wins[:, 1]
    out["col"] = wins[:, 2]
    out["size"] = patch
    return out


def _checked_windows(wins: np.ndarray, facts: list[dict], patch: int) -> np.ndarray:
    if wins.ndim != 2 or wins.shape[1] != 3 or not np.issubdtype(wins.dtype, np.integer):
        raise InputError("windows", f"need an (N, 3) integer array, got {wins.shape} {wins.dtype}")
    wins = wins.astype(np.int64)
    for i, (f, row, col) in enumerate(wins.tolist()):
        if not 0 <= f < len(facts):
            raise InputError(f"window #{i}", f"file {f} is not one of the {len(facts)} scenes")
        h, w = facts[f]["height"], facts[f]["width"]
        if row < 0 or col < 0 or row + patch > h or col + patch > w:
            raise InputError(
                f"window #{i} ({row}, {col})",
                f"a {patch} px patch does not fit in {facts[f]['image']} ({h}x{w})",
            )
    return wins
