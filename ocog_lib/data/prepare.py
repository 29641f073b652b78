"""What the benchmark preparers (Vaihingen, Potsdam, DFC-22) share.

Raw data is whatever a user unpacked (or just downloaded) under `data/raw/<dataset>`:
folders, zip archives, or both. `find_raw_files` lists the rasters and sidecars in either,
zip members read in place through GDAL's /vsizip/ (nested archives are named so the user
can unpack them). Each preparer pairs images with labels by name; `write_prepared` then
writes every pair as a tiled GeoTIFF image (`scenes/<name>.tif`, pixels unchanged) and a
uint8 class-id mask (`masks/<name>.tif`) on the image's grid, strip by strip so a 6000 px
Potsdam tile never sits in memory whole, and the manifest last.

Georeferencing: the image's own; else a world file (.tfw) that the preparer matched to it,
whose CRS comes from a .prj beside it, the <SRS> of a .vrt in its folder, or the `crs`
option, in that order. World files give the centre of the top-left pixel; the transform
is shifted by half a pixel to its corner, as GDAL does.

A pair that cannot be used (sizes differ, bands or dtype differ from the first image, a
label that is not what it should be) is skipped with its reason; only a dataset with no
usable pair at all is an error.
"""

from __future__ import annotations

import re
import warnings
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ocog_lib.atomic import atomic_path
from ocog_lib.data.manifest import DatasetManifest, ManifestItem
from ocog_lib.data.rgb_masks import DecodeStats
from ocog_lib.errors import InputError

RAW_SUFFIXES = (".tif", ".tiff", ".tfw", ".prj", ".vrt")
STRIP_ROWS = 512


@dataclass(frozen=True)
class RawFile:
    """A raw file on disk or inside a zip archive."""

    display: str  # /raw/top/a.tif or /raw/x.zip!top/a.tif
    gdal_path: str  # what rasterio opens
    name: str  # base name
    folder: str  # display path of the folder holding it (for grouping)
    stem_path: str  # display path without the suffix (for siblings)

    def read_text(self) -> str:
        if "!" in self.display and self.gdal_path.startswith("/vsizip/"):
            archive, member = self.display.split("!", 1)
            with zipfile.ZipFile(archive) as z:
                return z.read(member).decode("utf-8", "replace")
        return Path(self.display).read_text(errors="replace")

    def __str__(self) -> str:
        return self.display


def _on_disk(path: Path) -> RawFile:
    return RawFile(str(path), str(path), path.name, str(path.parent), str(path.with_suffix("")))


def _in_zip(archive: Path, member: str) -> RawFile:
    folder, _, name = member.rpartition("/")
    display = f"{archive}!{member}"
    stem = display[: len(display) - len(Path(name).suffix)]
    return RawFile(display, f"/vsizip/{archive}/{member}", name,
                   f"{archive}!{folder}" if folder else str(archive), stem)


def find_raw_files(root: Path) -> tuple[list[RawFile], list[str]]:
    """Rasters and sidecars under `root` (folders and zip archives), and nested archives."""
    root = Path(root)
    files: list[RawFile] = []
    nested: list[str] = []
    for path in sorted(root.rglob("*")):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue  # part files, hidden folders
        suffix = path.suffix.lower()
        if path.is_file() and suffix in RAW_SUFFIXES:
            files.append(_on_disk(path))
        elif path.is_file() and suffix == ".zip":
            try:
                with zipfile.ZipFile(path) as z:
                    members = [m for m in z.namelist() if not m.endswith("/")]
            except (zipfile.BadZipFile, OSError) as exc:
                raise InputError(path, f"not a readable zip archive ({exc})") from exc
            for m in sorted(members):
                ext = Path(m).suffix.lower()
                if ext in RAW_SUFFIXES:
                    files.append(_in_zip(path, m))
                elif ext == ".zip":
                    nested.append(f"{path}!{m}")
    return files, nested


def siblings(files: Iterable[RawFile]) -> dict[str, RawFile]:
    """Index by display path without suffix, lower-cased suffix kept apart by the caller."""
    return {f.stem_path + Path(f.name).suffix.lower(): f for f in files}


def prefer_largest_folder(matches: list[tuple[str, RawFile]]) -> dict[str, RawFile]:
    """Key -> file, where a key found in several folders comes from the folder holding the
    most matches (e.g. ISPRS's complete ground truth over its 'for participants' subset)."""
    counts: dict[str, int] = {}
    for _, f in matches:
        counts[f.folder] = counts.get(f.folder, 0) + 1
    out: dict[str, RawFile] = {}
    for key, f in sorted(matches, key=lambda m: (-counts[m[1].folder], m[1].display)):
        out.setdefault(key, f)
    return out


# ------------------------------------------------------------------ georeferencing


def read_world_file(world: RawFile):
    """The affine transform of a world file (A, D, B, E, C, F; C/F at the pixel centre)."""
    from rasterio import Affine

    try:
        a, d, b, e, c, f = (float(v) for v in world.read_text().split())
    except ValueError as exc:
        raise InputError(world, "not a world file (expected 6 numbers)") from exc
    return Affine(a, b, c - a / 2 - b / 2, d, e, f - d / 2 - e / 2)


def crs_near(world: RawFile, files: dict[str, RawFile]):
    """CRS from a .prj beside the world file, or the <SRS> of a .vrt in its folder."""
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    prj = files.get(world.stem_path + ".prj")
    if prj is not None:
        try:
            return CRS.from_wkt(prj.read_text())
        except CRSError as exc:
            raise InputError(prj, f"not a readable projection ({exc})") from exc
    for f in files.values():
        if f.folder == world.folder and f.name.lower().endswith(".vrt"):
            m = re.search(r"<SRS[^>]*>([^<]+)</SRS>", f.read_text())
            if m:
                import html

                try:
                    return CRS.from_user_input(html.unescape(m.group(1)).strip())
                except CRSError:
                    continue
    return None


# ------------------------------------------------------------------ writing


@dataclass(frozen=True)
class Pair:
    name: str  # item name (file name of the outputs)
    image: RawFile
    mask: RawFile
    tile_id: str = ""
    world_file: RawFile | None = None  # georeferencing when the image has none


@dataclass(frozen=True)
class DatasetSpec:
    """How one benchmark's pairs become a prepared dataset."""

    dataset: str
    classes: dict[int, str]
    band_names: tuple[str, ...]
    sensor: str
    notes: str
    decode: Callable[[np.ndarray], tuple[np.ndarray, DecodeStats]]  # label window -> ids
    mask_bands: tuple[int, ...]  # 1-based bands of the label raster that decode reads
    ignore_index: int = 255
    max_unknown_fraction: float = 0.01
    crs: str | None = None  # for images georeferenced by a world file without a CRS


@dataclass
class PreparedDataset:
    manifest: DatasetManifest
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)
    unlabeled: int = 0  # images without a label, left out
    ungeoreferenced: list[str] = field(default_factory=list)


class _Skip(Exception):
    """One pair cannot be used; the message says why."""


def write_prepared(
    spec: DatasetSpec,
    pairs: list[Pair],
    out_dir: Path,
    *,
    raw_dir: Path,
    files: dict[str, RawFile] | None = None,
    skipped: Iterable[tuple[str, str]] = (),
    unlabeled: int = 0,
    limit: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> PreparedDataset:
    """Write every usable pair under `out_dir`, then manifest.json."""
    out_dir = Path(out_dir)
    files = files or {}
    result = PreparedDataset(DatasetManifest(spec.dataset, dict(spec.classes),
                                             ignore_index=spec.ignore_index, notes=spec.notes),
                             list(skipped), unlabeled)
    first: tuple[int, str] | None = None
    for pair in sorted(pairs, key=lambda p: p.name):
        if limit is not None and len(result.manifest.items) >= limit:
            break
        try:
            bands, dtype, georeferenced = _write_pair(spec, pair, out_dir, files, first)
        except _Skip as exc:
            result.skipped.append((pair.name, str(exc)))
            continue
        first = first or (bands, dtype)
        if not georeferenced:
            result.ungeoreferenced.append(pair.name)
        result.manifest.items.append(ManifestItem(
            pair.name, f"scenes/{pair.name}.tif", f"masks/{pair.name}.tif", "scene",
            pair.tile_id, spec.sensor))
        if progress:
            progress(f"{spec.dataset}: {pair.name} ({len(result.manifest.items)}/{len(pairs)})")
    if not result.manifest.items:
        reasons = "; ".join(f"{n}: {r}" for n, r in result.skipped[:5]) or "no image/label pairs"
        raise InputError(raw_dir, f"nothing to prepare for {spec.dataset} ({reasons})")
    if result.ungeoreferenced:
        result.manifest.notes += (
            f" No CRS/transform for {len(result.ungeoreferenced)} item(s): pixel grid only.")
    result.manifest.save(out_dir)
    return result


def _open(f: RawFile):
    import rasterio

    try:
        return rasterio.open(f.gdal_path)
    except rasterio.errors.RasterioError as exc:
        raise _Skip(f"{f} is not a readable raster ({exc})") from exc


def _georef(spec: DatasetSpec, src, pair: Pair, files: dict[str, RawFile]):
    from rasterio.crs import CRS

    crs, transform = src.crs, src.transform
    if transform.is_identity and pair.world_file is not None:
        try:
            transform = read_world_file(pair.world_file)
            crs = crs or crs_near(pair.world_file, files)
        except InputError as exc:
            raise _Skip(str(exc)) from exc
    if crs is None and spec.crs and not transform.is_identity:
        crs = CRS.from_user_input(spec.crs)
    return crs, transform


def _write_pair(spec: DatasetSpec, pair: Pair, out_dir: Path, files: dict[str, RawFile],
                first: tuple[int, str] | None) -> tuple[int, str, bool]:
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.windows import Window

    from ocog_lib.data.sample import GDAL_CACHE_BYTES, TIFF_PROFILE

    with warnings.catch_warnings(), rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with _open(pair.image) as img, _open(pair.mask) as lab:
            bands, dtype = img.count, img.dtypes[0]
            if first is not None and (bands, dtype) != first:
                raise _Skip(f"{pair.image} has {bands} {dtype} bands, the dataset's first image "
                            f"{first[0]} {first[1]}")
            if (lab.width, lab.height) != (img.width, img.height):
                raise _Skip(f"label {pair.mask} is {lab.width}x{lab.height}, image "
                            f"{pair.image} is {img.width}x{img.height}")
            rgb = len(spec.mask_bands) > 1
            wanted = "uint8" if rgb else "integer"
            if lab.count < max(spec.mask_bands) or (
                    lab.dtypes[0] != "uint8" if rgb else "int" not in lab.dtypes[0]):
                raise _Skip(f"label {pair.mask} has {lab.count} {lab.dtypes[0]} band(s); "
                            f"expected {len(spec.mask_bands)} {wanted}")
            crs, transform = _georef(spec, img, pair, files)
            georeferenced = not transform.is_identity
            base = dict(TIFF_PROFILE, width=img.width, height=img.height,
                        transform=transform if georeferenced else None,
                        crs=crs if georeferenced else None)
            strips = [Window(0, y, img.width, min(STRIP_ROWS, img.height - y))
                      for y in range(0, img.height, STRIP_ROWS)]

            stats = DecodeStats()
            with atomic_path(out_dir / "masks" / f"{pair.name}.tif") as tmp:
                with rasterio.open(tmp, "w", count=1, dtype="uint8", **base) as out:
                    out.set_band_description(1, "class id")
                    for win in strips:
                        ids, s = spec.decode(lab.read(list(spec.mask_bands), window=win))
                        stats.add(s)
                        out.write(ids[None], window=win)
                if stats.unknown_fraction > spec.max_unknown_fraction:
                    raise _Skip(
                        f"label {pair.mask}: {stats.unknown_fraction:.1%} of its pixels hold "
                        f"values outside the {spec.dataset} classes (e.g. {stats.examples()}); "
                        "is it a label raster?")
            with atomic_path(out_dir / "scenes" / f"{pair.name}.tif") as tmp:
                with rasterio.open(tmp, "w", count=bands, dtype=dtype, nodata=img.nodata,
                                   **base) as out:
                    for i, d in enumerate(spec.band_names[:bands], start=1):
                        out.set_band_description(i, d)
                    for win in strips:
                        out.write(img.read(window=win), window=win)
    return bands, dtype, georeferenced


def missing_raw(raw_dir: Path, dataset: str, what: str, nested: list[str]) -> InputError:
    """The error for a raw folder without the expected files: where to get them."""
    from ocog_lib.data.external import how_to_obtain

    hint = (f"; unpack the nested archive(s) {', '.join(nested[:3])} first" if nested else "")
    return InputError(raw_dir, f"no {what} found{hint}; {how_to_obtain(dataset, raw_dir)}")


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")
