"""Is a package what it says it is? Shapes, dtypes, splits and sidecars against its records.

`validate_package` runs whenever a package is opened for training: a file whose datasets
disagree with its own `modalities` attribute, whose metadata has the wrong length, whose
split indices fall outside it or overlap, or whose sidecars are not the ones written with
it, is rejected with an InputError naming the file and the cause. `compare_with_sources`
goes further and re-reads samples from the source COGs with GDAL (a reader independent of
the engine that exported them) to compare pixel for pixel.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ocog_lib.errors import InputError
from ocog_lib.hdf5 import layout as L
from ocog_lib.hdf5.remote import open_h5, read_bytes


@dataclass
class PackageInfo:
    uri: str
    samples: int
    modalities: dict[str, dict]  # name -> {"shape": [C, H, W], "dtype": str}
    image_modality: str
    label_modality: str  # "" without labels
    patch_size: int
    nodata: int
    ignore_index: int
    classes: dict[int, str]
    band_names: list[str]
    splits: dict[str, list[int]]
    band_stats: dict[str, dict]
    tile_info: dict[str, dict]
    scenes: list[dict]
    windows: np.ndarray  # (N, 3) int64: file (into scenes), row, col
    attrs: dict[str, Any] = field(default_factory=dict)


def validate_package(
    uri: str | os.PathLike[str],
    *,
    splits_path: str | os.PathLike[str] | None = None,
    check_sidecars: bool = True,
    source_opts: dict | None = None,
) -> PackageInfo:
    """Check a package and return what it holds; InputError(file, cause) when it is wrong.

    `splits_path` replaces the package's own splits file (e.g. hand-made splits); it is
    checked for range and overlap but not against the recorded sha256.
    """
    uri = str(uri)
    opts = source_opts or {}
    attrs, modalities, n, meta = _check_file(uri, opts)
    recorded = _json_attr(uri, attrs, L.ATTR_SIDECARS)
    sidecars = {
        kind: _read_sidecar(uri, kind, recorded, splits_path, check_sidecars, opts)
        for kind in L.SIDECARS
    }
    splits = _check_splits(splits_path or L.sidecar_uri(uri, "splits"), sidecars["splits"], n)
    _check_band_stats(L.sidecar_uri(uri, "band_stats"), sidecars["band_stats"], modalities)
    tile_info = sidecars["tile_info"]
    missing = sorted({t.decode() for t in np.unique(meta["tile_id"])} - set(tile_info))
    if missing:
        raise InputError(
            L.sidecar_uri(uri, "tile_info"), f"no entry for tile id(s) {missing[:5]} in metadata"
        )
    image_key = attrs[L.ATTR_IMAGE]
    return PackageInfo(
        uri=uri,
        samples=n,
        modalities=modalities,
        image_modality=image_key,
        label_modality=attrs.get(L.ATTR_LABEL, ""),
        patch_size=int(attrs[L.ATTR_PATCH]),
        nodata=int(attrs.get(L.ATTR_NODATA, 0)),
        ignore_index=int(attrs.get(L.ATTR_IGNORE, 255)),
        classes={int(k): v for k, v in _json_attr(uri, attrs, L.ATTR_CLASSES).items()},
        band_names=_json_attr(uri, attrs, "band_names").get(image_key, []),
        splits=splits,
        band_stats=sidecars["band_stats"],
        tile_info=tile_info,
        scenes=_json_attr(uri, attrs, L.ATTR_SCENES),
        windows=np.stack([meta["file"], meta["row"], meta["col"]], axis=1).astype(np.int64),
        attrs=attrs,
    )


def _check_file(uri: str, opts: dict) -> tuple[dict, dict, int, np.ndarray]:
    """The package's attributes, modalities, sample count and metadata, each checked."""
    try:
        h5 = open_h5(uri, **opts)
    except FileNotFoundError as exc:
        raise InputError(uri, "package not found") from exc
    except OSError as exc:
        raise InputError(uri, f"not a readable HDF5 file ({exc})") from exc
    with h5:
        attrs = {k: _plain(v) for k, v in h5.attrs.items()}
        if attrs.get(L.ATTR_FORMAT) != L.FORMAT:
            raise InputError(uri, f"not an ocog package (attribute format={attrs.get('format')!r})")
        if attrs.get(L.ATTR_VERSION) != L.FORMAT_VERSION:
            raise InputError(
                uri,
                f"format version {attrs.get(L.ATTR_VERSION)} is not the supported "
                f"{L.FORMAT_VERSION}; re-export it",
            )
        modalities = _json_attr(uri, attrs, L.ATTR_MODALITIES)
        n = _check_modalities(uri, h5, modalities, attrs)
        meta = _check_metadata(uri, h5, n, attrs)
    return attrs, modalities, n, meta


def _read_sidecar(
    uri: str,
    kind: str,
    recorded: dict,
    splits_path: str | os.PathLike[str] | None,
    check_sidecars: bool,
    opts: dict,
) -> Any:
    """One sidecar's JSON, checked against the sha256 the package records (unless it is
    the caller's own splits file)."""
    own = not (kind == "splits" and splits_path)
    side = L.sidecar_uri(uri, kind) if own else str(splits_path)
    try:
        raw = read_bytes(side, **opts)
    except (FileNotFoundError, InputError) as exc:
        raise InputError(side, f"sidecar of {uri} is missing ({exc})") from exc
    expected = recorded.get(kind, {}).get("sha256")
    if check_sidecars and own and hashlib.sha256(raw).hexdigest() != expected:
        raise InputError(
            side,
            f"not the {kind} file written with {uri} (sha256 differs from the one the "
            "package records: a partial re-export or a hand edit); re-export the package, "
            "or pass your own splits file explicitly",
        )
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise InputError(side, f"not valid JSON ({exc})") from exc


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _json_attr(uri: str, attrs: dict, key: str) -> Any:
    if key not in attrs:
        raise InputError(uri, f"root attribute {key!r} is missing")
    try:
        return json.loads(attrs[key])
    except (TypeError, ValueError) as exc:
        raise InputError(uri, f"root attribute {key!r} is not valid JSON ({exc})") from exc


def _check_modalities(uri: str, h5, modalities: dict, attrs: dict) -> int:
    image_key, label_key = attrs.get(L.ATTR_IMAGE), attrs.get(L.ATTR_LABEL, "")
    if image_key not in modalities:
        raise InputError(uri, f"image modality {image_key!r} is not among {sorted(modalities)}")
    if label_key and label_key not in modalities:
        raise InputError(uri, f"label modality {label_key!r} is not among {sorted(modalities)}")
    patch = attrs.get(L.ATTR_PATCH)
    n: int | None = None
    for name, spec in modalities.items():
        if name not in h5:
            raise InputError(uri, f"modality {name!r} is listed but has no dataset")
        ds = h5[name]
        want = tuple(spec["shape"])
        if ds.ndim != 4 or ds.shape[1:] != want:
            raise InputError(
                uri,
                f"dataset {name!r} is {ds.shape}; its metadata says (N, *{list(want)})",
            )
        if ds.dtype != np.dtype(spec["dtype"]):
            raise InputError(
                uri, f"dataset {name!r} is {ds.dtype}; its metadata says {spec['dtype']}"
            )
        if want[1:] != (patch, patch):
            raise InputError(
                uri, f"dataset {name!r} holds {want[1]}x{want[2]} px, patch_size is {patch}"
            )
        if ds.chunks != (1, *want):
            raise InputError(
                uri, f"dataset {name!r} is chunked {ds.chunks}, not one sample per chunk"
            )
        if n is None:
            n = ds.shape[0]
        elif ds.shape[0] != n:
            raise InputError(uri, f"dataset {name!r} has {ds.shape[0]} samples, the image has {n}")
    return int(n or 0)


def _check_metadata(uri: str, h5, n: int, attrs: dict) -> np.ndarray:
    if L.METADATA not in h5:
        raise InputError(uri, f"no {L.METADATA!r} dataset")
    ds = h5[L.METADATA]
    names = ds.dtype.names or ()
    missing = [f for f in L.METADATA_FIELDS if f not in names]
    if missing:
        raise InputError(uri, f"{L.METADATA!r} lacks field(s) {missing}")
    if ds.shape != (n,):
        raise InputError(
            uri, f"{L.METADATA!r} has shape {ds.shape}; the modalities hold {n} samples"
        )
    meta = ds[()]
    scenes = json.loads(attrs.get(L.ATTR_SCENES, "[]"))
    if n and (meta["file"].min() < 0 or meta["file"].max() >= len(scenes)):
        raise InputError(uri, f"{L.METADATA!r} refers to scenes outside the {len(scenes)} recorded")
    if n and (meta["size"] != attrs.get(L.ATTR_PATCH)).any():
        raise InputError(uri, f"{L.METADATA!r} window sizes differ from patch_size")
    return meta


def _check_splits(where: str | os.PathLike[str], splits: Any, n: int) -> dict[str, list[int]]:
    where = str(where)
    if not isinstance(splits, dict) or set(splits) != set(L.SPLITS):
        keys = sorted(splits) if isinstance(splits, dict) else type(splits).__name__
        raise InputError(where, f"splits must be an object with keys {list(L.SPLITS)}, got {keys}")
    seen: dict[int, str] = {}
    out: dict[str, list[int]] = {}
    for name in L.SPLITS:
        idx = splits[name]
        if not isinstance(idx, list) or not all(isinstance(i, int) for i in idx):
            raise InputError(where, f"split {name!r} is not a list of integers")
        bad = [i for i in idx if not 0 <= i < n]
        if bad:
            raise InputError(
                where, f"split {name!r} has indices outside the package's {n} samples: {bad[:5]}"
            )
        for i in idx:
            if i in seen:
                raise InputError(where, f"sample {i} is in both {seen[i]!r} and {name!r}")
            seen[i] = name
        out[name] = idx
    return out


def _check_band_stats(where: str, stats: Any, modalities: dict) -> None:
    if not isinstance(stats, dict):
        raise InputError(where, "band stats must be an object keyed by modality")
    for name, spec in modalities.items():
        if name not in stats:
            raise InputError(where, f"no band stats for modality {name!r}")
        bands = spec["shape"][0]
        for key in ("mean", "std", "min", "max"):
            vals = stats[name].get(key)
            if not isinstance(vals, list) or len(vals) != bands:
                raise InputError(
                    where, f"{name}.{key} must list one value per band ({bands}), got {vals!r:.60}"
                )


# ---- pixels against the sources -----------------------------------------------------------


@dataclass
class SourceCheck:
    checked: list[int]
    mismatches: list[str]

    @property
    def passed(self) -> bool:
        return bool(self.checked) and not self.mismatches


def compare_with_sources(
    uri: str | os.PathLike[str], *, samples: int = 16, seed: int = 0
) -> SourceCheck:
    """Re-read a seeded random subset of samples from their COGs with GDAL; compare pixels."""
    import rasterio
    from rasterio.windows import Window

    info = validate_package(uri)
    rng = np.random.default_rng(seed)
    n = info.samples
    picks = sorted(rng.choice(n, size=min(n, samples), replace=False).tolist())
    mismatches: list[str] = []
    with open_h5(uri) as h5:
        meta = h5[L.METADATA]
        for i in picks:
            m = meta[i]
            scene = info.scenes[int(m["file"])]
            row, col, size = int(m["row"]), int(m["col"]), int(m["size"])
            where = f"sample {i} ({scene['name']} at row {row}, col {col})"
            window = Window(col, row, size, size)
            pairs = [(info.image_modality, scene["image"], h5[info.image_modality][i])]
            if info.label_modality:
                pairs.append((info.label_modality, scene["mask"], h5[info.label_modality][i]))
            for name, path, got in pairs:
                try:
                    with rasterio.open(path) as src:
                        want = src.read(window=window)
                except rasterio.errors.RasterioIOError as exc:
                    mismatches.append(f"{where}: {name} source {path} unreadable ({exc})")
                    continue
                if want.shape != got.shape:
                    mismatches.append(f"{where}: {name} is {got.shape}, COG window {want.shape}")
                elif not np.array_equal(want, got):
                    diff = int((want != got).sum())
                    mismatches.append(f"{where}: {name} differs from {path} in {diff} values")
    return SourceCheck(checked=picks, mismatches=mismatches)
