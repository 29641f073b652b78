"""check_variant_files: every file of a written variant judged, none raised on, the rows
filled for DuckDB."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from ocog_lib.cog.checks import FileCheck, check_variant_files
from ocog_lib.cog.profiles import profile_from_spec, resolve_profile
from ocog_lib.cog.write import write_variant
from ocog_lib.data.manifest import DatasetManifest, ManifestItem

PLAIN = dict(driver="GTiff", crs="EPSG:32618", transform=rasterio.Affine(10, 0, 5e5, 0, -10, 4e6))


def _tiff(path: Path, pixels: np.ndarray) -> None:
    count, height, width = pixels.shape
    with rasterio.open(path, "w", width=width, height=height, count=count,
                       dtype=pixels.dtype, **PLAIN) as dst:  # fmt: skip
        dst.write(pixels)


def test_a_striped_file_with_changed_pixels_fails_both_checks(tmp_path):
    rng = np.random.default_rng(0)
    # larger than one 512 block and striped: COG rules want it tiled
    pixels = rng.integers(0, 4000, (4, 640, 640), dtype=np.uint16)
    (tmp_path / "prep").mkdir()
    _tiff(tmp_path / "prep" / "a.tif", pixels)
    manifest = DatasetManifest("t", {0: "x"}, [ManifestItem("a", "a.tif", None, "scene")])
    manifest.save(tmp_path / "prep")
    changed = pixels.copy()
    changed[0, 5, 7] += 1
    _tiff(tmp_path / "a_variant.tif", changed)
    path = str(tmp_path / "a_variant.tif")
    rows = [{"item": "a", "kind": "image", "path": path, "bytes": 1}]

    checked = check_variant_files(manifest, resolve_profile("default"), rows)
    (file,) = checked.files
    assert (file.path, file.valid_cog, file.lossless_ok) == (path, False, False) and file.errors
    assert checked.invalid == {path: list(file.errors)} and checked.differing == [path]
    assert checked.annotated(rows) == [{**rows[0], "is_valid_cog": False, "lossless_ok": False}]
    assert "is_valid_cog" not in rows[0]  # the caller's rows are left as they were


def test_a_written_variant_passes_and_lossy_images_are_not_compared(tmp_path):
    rng = np.random.default_rng(1)
    prep = tmp_path / "prep"
    prep.mkdir()
    _tiff(prep / "a.tif", rng.integers(0, 4000, (4, 300, 300), dtype=np.uint16))
    _tiff(prep / "a_mask.tif", rng.integers(0, 6, (1, 300, 300), dtype=np.uint8))
    manifest = DatasetManifest("t", {0: "x"}, [ManifestItem("a", "a.tif", "a_mask.tif", "scene")])
    manifest.save(prep)
    manifest = DatasetManifest.load(prep)
    lossy = profile_from_spec("lerc_zstd:max_z_error=2")
    assert not lossy.lossless
    _, rows = write_variant(manifest, lossy, tmp_path / "variant", check=False)

    checked = check_variant_files(manifest, lossy, rows)
    by_kind = {row["kind"]: f for row, f in zip(rows, checked.files, strict=True)}
    # the image's profile is lossy: not compared; its mask's is lossless: compared, equal
    assert by_kind["image"] == FileCheck(rows[0]["path"], True, (), None)
    assert by_kind["mask"].valid_cog and by_kind["mask"].lossless_ok is True
    assert checked.invalid == {} and checked.differing == []
    annotated = checked.annotated(rows)
    assert [list(r) for r in annotated] == [list(r) for r in rows]  # same columns, same order
    assert [(r["is_valid_cog"], r["lossless_ok"]) for r in annotated] == [(True, None),
                                                                         (True, True)]


def test_a_file_ocogs_decoder_reads_unlike_gdal_is_not_valid(tmp_path, monkeypatch):
    """The asset path writes with check=False: the engine-vs-GDAL check must run here too."""
    from ocog_lib.cog import validate

    rng = np.random.default_rng(2)
    prep = tmp_path / "prep"
    prep.mkdir()
    _tiff(prep / "a.tif", rng.integers(0, 4000, (2, 300, 300), dtype=np.uint16))
    manifest = DatasetManifest("t", {0: "x"}, [ManifestItem("a", "a.tif", None, "scene")])
    manifest.save(prep)
    manifest = DatasetManifest.load(prep)
    profile = resolve_profile("default")
    _, rows = write_variant(manifest, profile, tmp_path / "variant", check=False)
    assert not check_variant_files(manifest, profile, rows).invalid

    real = validate.decode_tile

    def off_by_one(idx, data):  # a decoder bug GDAL does not share
        tile = real(idx, data).copy()
        tile[0, 0, 0] += 1
        return tile

    monkeypatch.setattr(validate, "decode_tile", off_by_one)
    checked = check_variant_files(manifest, profile, rows)
    (errors,) = checked.invalid.values()
    assert errors == ["ocog's decoder differs from GDAL at tile (row 0, col 0, plane 0)"]
    assert checked.annotated(rows)[0]["is_valid_cog"] is False
