"""Vaihingen, Potsdam and DFC-22 preparers on miniature archives in the real layouts."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from ocog_lib.cog.profiles import resolve_profile
from ocog_lib.cog.write import write_variant
from ocog_lib.data.dfc22 import CLASSES as DFC_CLASSES
from ocog_lib.data.dfc22 import prepare_dfc22
from ocog_lib.data.manifest import DatasetManifest
from ocog_lib.data.potsdam import PotsdamConfig, prepare_potsdam
from ocog_lib.data.prepare import RawFile, read_world_file
from ocog_lib.data.vaihingen import VaihingenConfig, prepare_vaihingen
from ocog_lib.errors import InputError
from ocog_lib.stream.dataset import make_stream
from tests.support.archives import (
    ISPRS_NAMES,
    build_dfc22,
    build_potsdam,
    build_vaihingen,
    tiff_bytes,
    world_file,
)

# the miniature Vaihingen tiles, like the real ones, carry no georeferencing
pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


def assert_prepared(result, exp, out_dir):
    manifest = DatasetManifest.load(out_dir)
    assert [i.name for i in manifest.items] == sorted(exp.images)
    assert manifest.ignore_index == 255 and result.unlabeled == exp.unlabeled
    for item in manifest.items:
        assert item.role == "scene" and item.mask == f"masks/{item.name}.tif"
        with rasterio.open(manifest.image_path(item)) as img, \
                rasterio.open(manifest.mask_path(item)) as msk:
            np.testing.assert_array_equal(img.read(), exp.images[item.name])
            np.testing.assert_array_equal(msk.read(1), exp.ids[item.name])
            assert msk.dtypes[0] == "uint8" and img.profile["tiled"]
            want_t = exp.transforms[item.name]
            assert img.transform == (want_t or rasterio.Affine.identity())
            assert msk.transform == img.transform
            want_crs = exp.crs[item.name]
            assert (img.crs.to_string() if img.crs else None) == want_crs
            assert msk.crs == img.crs
    return manifest


def test_vaihingen_from_zip_and_folders(tmp_path):
    exp = build_vaihingen(tmp_path / "raw")
    result = prepare_vaihingen(tmp_path / "raw", tmp_path / "out")
    manifest = assert_prepared(result, exp, tmp_path / "out")
    assert manifest.classes == ISPRS_NAMES and result.skipped == []
    with rasterio.open(manifest.image_path(manifest.items[0])) as img:
        assert img.descriptions == ("nir", "red", "green")
    assert "No CRS" not in manifest.notes


def test_vaihingen_eroded_ground_truth(tmp_path):
    exp = build_vaihingen(tmp_path / "raw", eroded=True)
    result = prepare_vaihingen(tmp_path / "raw", tmp_path / "out", VaihingenConfig(eroded=True))
    manifest = assert_prepared(result, exp, tmp_path / "out")
    assert "eroded" in manifest.notes


def test_vaihingen_without_geoinfo_keeps_the_pixel_grid(tmp_path):
    exp = build_vaihingen(tmp_path / "raw", geoinfo=False)
    result = prepare_vaihingen(tmp_path / "raw", tmp_path / "out", VaihingenConfig(limit=1))
    exp.images.pop("area3")
    manifest = assert_prepared(result, exp, tmp_path / "out")
    assert result.ungeoreferenced == ["area1"] and "No CRS/transform for 1" in manifest.notes


def test_potsdam_skips_bad_labels_with_reasons(tmp_path):
    exp = build_potsdam(tmp_path / "raw")
    result = prepare_potsdam(tmp_path / "raw", tmp_path / "out", PotsdamConfig(crs="EPSG:32633"))
    manifest = assert_prepared(result, exp, tmp_path / "out")
    skipped = dict(result.skipped)
    assert set(skipped) == set(exp.skipped)
    for name, reason in exp.skipped.items():
        assert reason in skipped[name] and "5_Labels_all.zip!" in skipped[name]
    with rasterio.open(manifest.image_path(manifest.items[0])) as img:
        assert img.descriptions == ("red", "green", "blue", "nir") and img.count == 4
    rgb = prepare_potsdam(tmp_path / "raw", tmp_path / "rgb", PotsdamConfig(imagery="RGB"))
    assert {i.sensor for i in rgb.manifest.items} == {"aerial RGB 5 cm"}
    with pytest.raises(InputError, match="valid: RGBIR, RGB, IRRG"):
        prepare_potsdam(tmp_path / "raw", tmp_path / "x", PotsdamConfig(imagery="CIR"))


def test_dfc22_maps_codes_and_ignores_no_information(tmp_path):
    exp = build_dfc22(tmp_path / "raw")
    result = prepare_dfc22(tmp_path / "raw", tmp_path / "out")
    manifest = assert_prepared(result, exp, tmp_path / "out")
    assert manifest.classes == DFC_CLASSES and len(DFC_CLASSES) == 15
    assert DFC_CLASSES[0] == "urban_fabric" and DFC_CLASSES[14] == "clouds_and_shadows"


@pytest.mark.parametrize("dataset", ["vaihingen", "potsdam", "dfc22"])
def test_missing_raw_data_names_path_and_source(tmp_path, dataset):
    prepare = {"vaihingen": prepare_vaihingen, "potsdam": prepare_potsdam,
               "dfc22": prepare_dfc22}[dataset]
    raw = tmp_path / "raw" / dataset
    raw.mkdir(parents=True)
    with pytest.raises(InputError) as err:
        prepare(raw, tmp_path / "out")
    message = str(err.value)
    assert str(raw) in message and "https://" in message and "Terms:" in message
    assert not (tmp_path / "out").exists()


def test_labels_missing_for_every_image_is_an_error(tmp_path):
    (tmp_path / "raw" / "top").mkdir(parents=True)
    (tmp_path / "raw" / "top" / "top_mosaic_09cm_area1.tif").write_bytes(
        tiff_bytes(np.zeros((3, 16, 16), np.uint8)))
    with pytest.raises(InputError, match="no ground truth .* for any of 1 orthophotos"):
        prepare_vaihingen(tmp_path / "raw", tmp_path / "out")


def test_world_files_give_the_pixel_corner(tmp_path):
    t = rasterio.Affine(0.09, 0.0, 496900.0, 0.0, -0.09, 5420500.0)
    (tmp_path / "a.tfw").write_text(world_file(t))
    f = RawFile(str(tmp_path / "a.tfw"), str(tmp_path / "a.tfw"), "a.tfw", str(tmp_path),
                str(tmp_path / "a"))
    assert read_world_file(f).almost_equals(t)
    # GDAL reads the same world file beside a raster the same way
    (tmp_path / "a.tif").write_bytes(tiff_bytes(np.zeros((1, 8, 8), np.uint8)))
    with rasterio.open(tmp_path / "a.tif") as ds:
        assert ds.transform.almost_equals(t)


@pytest.mark.parametrize("dataset", ["vaihingen", "potsdam", "dfc22"])
def test_prepared_benchmarks_feed_variants_and_the_engine(tmp_path, dataset):
    build, prepare = {"vaihingen": (build_vaihingen, prepare_vaihingen),
                      "potsdam": (build_potsdam, prepare_potsdam),
                      "dfc22": (build_dfc22, prepare_dfc22)}[dataset]
    build(tmp_path / "raw")
    manifest = prepare(tmp_path / "raw", tmp_path / "prepared").manifest
    variant, rows = write_variant(manifest, resolve_profile("optimal_remote"),
                                  tmp_path / "variant")
    assert {r["kind"] for r in rows} == {"image", "mask"}
    assert all(r["is_valid_cog"] and r["lossless_ok"] for r in rows)
    loaded = DatasetManifest.load(tmp_path / "variant")
    images = [str(loaded.image_path(i)) for i in loaded.items]
    masks = [str(loaded.mask_path(i)) for i in loaded.items]
    stream = make_stream(images, masks, sampler="grid", patch_size=64, batch_size=8, threads=2)
    allowed = set(loaded.classes) | {loaded.ignore_index}
    handles = [rasterio.open(manifest.image_path(i)) for i in manifest.items]
    labels = [rasterio.open(manifest.mask_path(i)) for i in manifest.items]
    try:
        n = 0
        for batch in stream:
            assert set(np.unique(batch["mask"].numpy())) <= allowed
            for b, (fid, row, col) in enumerate(batch["window"].tolist()):
                win = Window(col, row, 64, 64)
                np.testing.assert_array_equal(batch["image"][b].numpy(),
                                              handles[fid].read(window=win))
                np.testing.assert_array_equal(batch["mask"][b].numpy(),
                                              labels[fid].read(1, window=win))
                n += 1
        assert n == len(stream.windows) > 0
    finally:
        stream.close()
        for h in handles + labels:
            h.close()


@pytest.mark.parametrize("dataset", ["vaihingen", "potsdam", "dfc22"])
def test_prepared_benchmarks_train(tmp_path, dataset):
    """A few optimizer steps on each miniature: the prepared layout is what training reads."""
    from ocog_lib import results
    from ocog_lib.settings import Settings
    from ocog_lib.train.configs import TrainConfig
    from ocog_lib.train.loop import train_and_record

    build, prepare = {"vaihingen": (build_vaihingen, prepare_vaihingen),
                      "potsdam": (build_potsdam, prepare_potsdam),
                      "dfc22": (build_dfc22, prepare_dfc22)}[dataset]
    settings = Settings(data_dir=tmp_path / "data", results_db=tmp_path / "ocog.duckdb")
    build(tmp_path / "raw")
    manifest = prepare(tmp_path / "raw", settings.prepared_dir(dataset)).manifest
    write_variant(manifest, resolve_profile("default"), settings.variant_dir(dataset, "default"))
    cfg = TrainConfig(dataset=dataset, loader_config="local-default", max_time=None,
                      iterations=3, eval_every=3, patch_size=32, batch_size=4, width=4,
                      depth=2, max_val_patches=8, norm_batches=1, batches_per_epoch=4)
    result = train_and_record(cfg, settings)
    assert result.steps == 3 and 0.0 <= result.miou <= 1.0
    assert set(result.per_class_iou) <= {str(c) for c in manifest.classes} | set(
        manifest.classes.values())
    _, rows = results.query(settings.results_db,
                            "SELECT dataset, loader_config, step FROM training_runs")
    assert (dataset, "local-default", 3) in rows
