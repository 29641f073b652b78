"""Embedding a whole dataset: every grid patch once, placed, timed and labelled exactly as
rasterio, h3 and the masks say."""

import dataclasses

import h3
import numpy as np
import pytest
import rasterio
import torch
from rasterio.warp import transform as warp
from rasterio.windows import Window

from ocog_lib.embed.h3cells import valid_cells
from ocog_lib.embed.infer import embed_dataset, patch_labels, scene_time
from ocog_lib.embed.train import dataset_files, train_encoder
from ocog_lib.embed.vectors import NO_LABEL
from tests.ocog_lib.embed.test_train import TINY


@pytest.fixture(scope="module")
def embedded(train_variants, tmp_path_factory):
    from ocog_lib.settings import Settings

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("embedded")
    (root / "data").mkdir()
    (root / "data" / "variants").symlink_to(train_variants.data_dir / "variants")
    s = Settings(data_dir=root / "data", results_db=root / "ocog.duckdb")
    r = train_encoder(dataclasses.replace(TINY, steps=2), s)
    return s, r, embed_dataset(r.model_path, settings=s, batch_size=96)


def test_every_grid_patch_once(embedded):
    s, r, e = embedded
    assert len(e) == 2 * 16 * 16 and e.dim == 16 and len(e.not_unit()) == 0
    assert sorted(set(e.source)) == ["scenes/l8_16R-452-3390.tif", "scenes/s2_18SVG.tif"]
    keys = set(zip(e.source, e.row.tolist(), e.col.tolist(), strict=True))
    assert len(keys) == len(e)
    assert set(e.row.tolist()) == set(range(0, 512, 32))
    assert np.isnat(e.time).all()  # the sample's scenes carry no acquisition time


def test_centres_cells_and_labels_match_rasterio_and_h3(embedded):
    s, r, e = embedded
    files = dataset_files("sample", r.variant, s)
    for rel, image, mask in zip(files.relpaths, files.images, files.masks, strict=True):
        sel = np.flatnonzero(e.source == rel)
        with rasterio.open(image) as ds:
            xs, ys = ds.xy(e.row[sel] + 16, e.col[sel] + 16, offset="ul")
            lon, lat = warp(ds.crs, "EPSG:4326", list(xs), list(ys))
        np.testing.assert_allclose(e.lon[sel], lon, rtol=0, atol=1e-9)
        np.testing.assert_allclose(e.lat[sel], lat, rtol=0, atol=1e-9)
        with rasterio.open(mask) as ds:
            for i in sel[:: 7]:
                m = ds.read(1, window=Window(int(e.col[i]), int(e.row[i]), 32, 32)).ravel()
                m = m[m != 255]
                expect = np.bincount(m).argmax() if len(m) else NO_LABEL
                assert e.labels[i] == expect
    assert valid_cells(e.cells).all()
    # 10 m x 32 px = 320 m: resolution 8 (531 m edge); the finest pixel size decides
    assert {h3.get_resolution(h3.int_to_str(int(c))) for c in e.cells} == {8}
    for i in (0, len(e) - 1):
        assert int(e.cells[i]) == h3.str_to_int(h3.latlng_to_cell(e.lat[i], e.lon[i], 8))


def test_resolution_can_be_set(embedded):
    s, r, _ = embedded
    e = embed_dataset(r.model_path, settings=s, h3_resolution=5, batch_size=256)
    assert {h3.get_resolution(h3.int_to_str(int(c))) for c in e.cells} == {5}


def test_labels_and_times():
    masks = np.full((3, 4, 4), 255, dtype=np.uint8)
    masks[0, :2] = 3
    masks[0, 2, :3] = 1  # 8 x class 3, 3 x class 1
    masks[1, :, :2] = 0
    masks[1, :, 2:] = 2  # a tie: the smaller class
    np.testing.assert_array_equal(patch_labels(masks, 3), [3, 0, NO_LABEL])
    np.testing.assert_array_equal(patch_labels(None, 2), [NO_LABEL, NO_LABEL])
    assert scene_time({"OCOG_DATETIME": "2024-06-15T16:40:00Z"}) == np.datetime64(
        "2024-06-15T16:40:00", "us")
    assert scene_time({"TIFFTAG_DATETIME": "2023:01:02 03:04:05"}) == np.datetime64(
        "2023-01-02T03:04:05", "us")
    assert np.isnat(scene_time({})) and np.isnat(scene_time({"OCOG_DATETIME": "soon"}))
