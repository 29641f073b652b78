"""Export: the package holds the COG windows the engine reads, with honest sidecars."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import rasterio

from ocog_lib.data.lineage import verify_package
from ocog_lib.errors import InputError
from ocog_lib.hdf5 import export as export_mod
from ocog_lib.hdf5.export import ExportConfig, SourceScene, export_hdf5
from ocog_lib.hdf5.validate import validate_package
from ocog_lib.stream.config import StreamConfig
from ocog_lib.stream.dataset import CogStream
from tests.support.hdf5pkg import cog_window, export_tiny
from tests.support.rasters import real_pixels, write_raster


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _package_files(result) -> list[Path]:
    return [result.path, *result.sidecars.values()]


def test_every_sample_equals_its_cog_window(package):
    res, scenes = package.result, package.scenes
    p = package.config.patch_size
    with h5py.File(res.path, "r") as f:
        assert f.attrs["image_modality"] == "image"  # the sample mixes Sentinel-2 and Landsat
        image, label, meta = f["image"], f["label"], f["metadata"][()]
        n = image.shape[0]
        assert image.shape == (n, 4, p, p) and image.dtype == np.dtype("<u2")
        assert label.shape == (n, 1, p, p) and label.dtype == np.uint8
        assert image.chunks == (1, 4, p, p) and label.chunks == (1, 1, p, p)
        assert image.compression == "gzip" and image.shuffle
        assert meta.shape == (n,) and meta.dtype.names[0] == "tile_id"
        assert n == res.samples > 0
        for i in range(n):
            m = meta[i]
            scene = scenes[int(m["file"])]
            row, col = int(m["row"]), int(m["col"])
            assert m["item"].decode() == scene.name
            assert m["tile_id"].decode() == scene.tile_id
            assert int(m["size"]) == p
            with rasterio.open(scene.image) as src:
                assert m["crs"].decode() == src.crs.to_string()
            np.testing.assert_array_equal(image[i], cog_window(scene.image, row, col, p))
            np.testing.assert_array_equal(label[i], cog_window(scene.mask, row, col, p))


def test_random_windows_are_the_engines_windows_and_pixels(tiny_sample, tmp_path):
    cfg = ExportConfig(patch_size=96, sampler="random", samples=40, seed=3, split_guard=False,
                       compression="lzf", batch_size=16)
    res = export_tiny(tiny_sample, tmp_path / "data_r.h5", cfg)
    from ocog_lib.hdf5.export import scenes_from_manifest

    scenes = scenes_from_manifest(tiny_sample.manifest, ("scene", "bench"))
    stream = CogStream([s.image for s in scenes], [s.mask for s in scenes],
                       StreamConfig(sampler="random", patch_size=96, length=40, seed=3,
                                    batch_size=40))
    batch = next(iter(stream.iter_batches()))
    stream.close()
    with h5py.File(res.path, "r") as f:
        meta = f["metadata"][()]
        got = np.stack([meta["file"], meta["row"], meta["col"]], axis=1)
        np.testing.assert_array_equal(got, stream.windows)
        np.testing.assert_array_equal(f["image"][()], batch["image"].numpy())
        np.testing.assert_array_equal(f["label"][:, 0], batch["mask"].numpy())
        assert f["image"].compression == "lzf"


@pytest.mark.parametrize("compression", ["none", "lzf"])
def test_compressions_round_trip(package, tiny_sample, tmp_path, compression):
    cfg = replace(package.config, compression=compression, sampler="grid", samples=6)
    res = export_tiny(tiny_sample, tmp_path / f"data_{compression}.h5", cfg)
    with h5py.File(res.path, "r") as f, h5py.File(package.result.path, "r") as ref:
        assert f["image"].compression == (None if compression == "none" else compression)
        # a grid subset: every sample equals the full grid package's sample at that window
        ref_meta = ref["metadata"][()]
        key = {(int(a), int(b), int(c)): i
               for i, (a, b, c) in enumerate(zip(ref_meta["file"], ref_meta["row"],
                                                 ref_meta["col"], strict=True))}
        meta = f["metadata"][()]
        assert len(meta) == 6
        for i, m in enumerate(meta):
            j = key[(int(m["file"]), int(m["row"]), int(m["col"]))]
            np.testing.assert_array_equal(f["image"][i], ref["image"][j])


def test_band_stats_exclude_nodata_and_ignore_index(tmp_path):
    img = real_pixels(3, 256, 256, "uint16", seed=4)
    img[:, :64, :] = 0  # a nodata stripe
    img[1, 100:120, 100:120] = 0  # one band's own holes
    mask = (img[0] // 1000 % 4).astype(np.uint8)[None]
    mask[0, 200:, :50] = 255
    image = write_raster(tmp_path / "img.tif", img, compress="DEFLATE", blocksize=128)
    label = write_raster(tmp_path / "lab.tif", mask, compress="DEFLATE", blocksize=128)
    scenes = [SourceScene("one", str(image), str(label), tile_id="T1", sensor="sentinel-2",
                          scene_date="2024-05-01")]
    res = export_hdf5(scenes, tmp_path / "data_s.h5",
                      ExportConfig(patch_size=64, stats_samples=10_000, split_block=128))
    stats = json.loads(res.sidecars["band_stats"].read_text())
    with h5py.File(res.path, "r") as f:
        assert f.attrs["image_modality"] == "sentinel2"
        assert f["metadata"][0]["scene_date"] == b"2024-05-01"
        x = f["sentinel2"][()].astype(np.float64)
        y = f["label"][()]
    for b in range(3):
        v = x[:, b][x[:, b] != 0]
        s = stats["sentinel2"]
        assert s["count"][b] == v.size
        np.testing.assert_allclose(
            [s["mean"][b], s["std"][b], s["min"][b], s["max"][b]],
            [v.mean(), v.std(), v.min(), v.max()], rtol=1e-9,
        )
    v = y[y != 255].astype(np.float64)
    assert stats["label"]["count"] == [v.size]
    np.testing.assert_allclose(stats["label"]["mean"], [v.mean()])
    assert stats["label"]["max"] == [float(v.max())]


def _split_of(res) -> tuple[np.ndarray, np.ndarray]:
    splits = json.loads(res.sidecars["splits"].read_text())
    which = np.empty(res.samples, dtype=object)
    for k, idx in splits.items():
        which[idx] = k
    with h5py.File(res.path, "r") as f:
        return which, f["metadata"][()]


def _assert_no_overlap_across_splits(res, patch: int) -> None:
    which, meta = _split_of(res)
    f, r, c = meta["file"], meta["row"], meta["col"]
    for i in range(res.samples):
        overlap = (f == f[i]) & (np.abs(r - r[i]) < patch) & (np.abs(c - c[i]) < patch)
        assert set(which[overlap]) == {which[i]}, f"sample {i} overlaps another split"


def test_splits_are_disjoint_spatial_blocks_with_a_guard(tiny_sample, tmp_path):
    cfg = ExportConfig(patch_size=64, sampler="random", samples=400, seed=1, split_block=128)
    res = export_tiny(tiny_sample, tmp_path / "data_sp.h5", cfg)
    splits = json.loads(res.sidecars["splits"].read_text())
    assert sorted(sum(splits.values(), [])) == list(range(res.samples))
    assert all(len(splits[k]) > 0 for k in ("train", "val", "test"))
    assert res.dropped > 0 and res.samples + res.dropped == 400
    assert len(splits["train"]) > len(splits["val"])
    _assert_no_overlap_across_splits(res, 64)
    which, meta = _split_of(res)
    f, r, c = meta["file"], meta["row"], meta["col"]
    for i in range(res.samples):  # the block of a window's centre decides its split
        same_block = (f == f[i]) & ((r + 32) // 128 == (r[i] + 32) // 128) & (
            (c + 32) // 128 == (c[i] + 32) // 128)
        assert set(which[same_block]) == {which[i]}
    # seeded: the same seed repeats them, another seed deals the blocks differently
    again = export_tiny(tiny_sample, tmp_path / "data_sp2.h5", cfg)
    assert json.loads(again.sidecars["splits"].read_text()) == splits
    other = export_tiny(tiny_sample, tmp_path / "data_sp3.h5", replace(cfg, seed=2))
    assert json.loads(other.sidecars["splits"].read_text()) != splits


@pytest.mark.parametrize("seed", range(4))
def test_sparse_windows_never_overlap_across_splits(tiny_sample, tmp_path, seed):
    """Few windows leave blocks without centres; windows reaching into them must agree too."""
    cfg = ExportConfig(patch_size=96, sampler="random", samples=40, seed=seed, split_block=96,
                       split_fractions=(0.4, 0.3, 0.3))
    res = export_tiny(tiny_sample, tmp_path / "data_sparse.h5", cfg)
    _assert_no_overlap_across_splits(res, 96)
    assert res.samples > 0


def test_reexport_is_skipped_and_forced_rewrite_is_byte_identical(
    package, tiny_sample, tmp_path
):
    out = tmp_path / "data_t.h5"
    first = export_tiny(tiny_sample, out)
    digests = {p.name: _digest(p) for p in _package_files(first)}
    stamp = out.stat().st_mtime_ns
    again = export_tiny(tiny_sample, out)
    assert again.skipped and out.stat().st_mtime_ns == stamp
    assert again.samples == first.samples and again.splits == first.splits
    forced = export_tiny(tiny_sample, out, force=True)
    assert not forced.skipped
    assert {p.name: _digest(p) for p in _package_files(forced)} == digests
    # lineage: the same bytes, the same content hash, recorded beside the package
    assert first.content_hash == again.content_hash == forced.content_hash == verify_package(
        out, list(first.sidecars.values()))
    changed = export_tiny(tiny_sample, out, replace(package.config, compression="lzf"))
    assert not changed.skipped and _digest(out) != digests["data_t.h5"]
    assert changed.content_hash not in (None, first.content_hash)
    # a sidecar that no longer matches its .h5 means the package is not complete: rewrite
    changed.sidecars["splits"].write_text("{}")
    assert not export_tiny(tiny_sample, out, replace(package.config, compression="lzf")).skipped
    validate_package(out)


def test_a_crash_mid_write_keeps_the_old_package_and_leaves_no_temp_files(
    package, tiny_sample, tmp_path, monkeypatch
):
    out = tmp_path / "data_c.h5"

    def boom(*_a, **_k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export_mod, "_metadata", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        export_tiny(tiny_sample, out)
    assert list(tmp_path.iterdir()) == []  # nothing under a final name, no temp left
    monkeypatch.undo()

    old = export_tiny(tiny_sample, out)
    digests = {p.name: _digest(p) for p in _package_files(old)}
    monkeypatch.setattr(export_mod, "_metadata", boom)
    with pytest.raises(RuntimeError):
        export_tiny(tiny_sample, out, replace(package.config, compression="none"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(digests)
    assert {p.name: _digest(p) for p in _package_files(old)} == digests
    validate_package(out)


def test_bad_inputs_name_the_input(package, tiny_sample, tmp_path):
    with pytest.raises(InputError, match="compression 'zstd'"):
        ExportConfig(compression="zstd")
    with pytest.raises(InputError, match="split_fractions"):
        ExportConfig(split_fractions=(0.5, 0.5, 0.5))
    with pytest.raises(InputError, match=r"data\.zarr: a package name ends in \.h5"):
        export_tiny(tiny_sample, tmp_path / "data.zarr")
    missing = SourceScene("gone", str(tmp_path / "gone.tif"))
    with pytest.raises(InputError, match="gone.tif: source of scene 'gone' not found"):
        export_hdf5([missing], tmp_path / "data_m.h5")
    with pytest.raises(InputError, match=r"window #1 \(400, 0\).*does not fit"):
        export_hdf5(package.scenes, tmp_path / "data_w.h5", package.config,
                    windows=np.array([[0, 0, 0], [0, 400, 0]]))
    assert not list(tmp_path.glob("*.h5"))


def test_given_windows_are_exported_in_order(package, tmp_path):
    wins = np.array([[2, 10, 20], [0, 384, 0], [3, 0, 384]])
    res = export_hdf5(package.scenes, tmp_path / "data_g.h5",
                      replace(package.config, split_guard=False), windows=wins)
    with h5py.File(res.path, "r") as f:
        assert f.attrs["windows_given"]
        for i, (fi, r, c) in enumerate(wins.tolist()):
            np.testing.assert_array_equal(f["image"][i],
                                          cog_window(package.scenes[fi].image, r, c, 128))


def test_a_crash_between_renames_leaves_no_h5_under_the_final_name(
    package, tiny_sample, tmp_path, monkeypatch
):
    import ocog_lib.atomic as atomic

    out = tmp_path / "data_r.h5"
    export_tiny(tiny_sample, out)
    real_replace = atomic.os.replace

    def fail_on_h5(src, dst):
        if str(dst).endswith(".h5"):
            raise OSError("power cut")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", fail_on_h5)
    with pytest.raises(OSError, match="power cut"):
        export_tiny(tiny_sample, out, replace(package.config, compression="none"))
    monkeypatch.undo()
    assert not out.exists()  # the old .h5 went first; new sidecars without an .h5 = no package
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(InputError, match="data_r.h5: package not found"):
        validate_package(out)
    export_tiny(tiny_sample, out)
    validate_package(out)


@pytest.mark.parametrize("shuffle", [True, False])
def test_threaded_gzip_chunks_are_the_bytes_hdf5_itself_writes(tmp_path, shuffle):
    cfg = ExportConfig(compression="gzip", gzip_level=5, shuffle=shuffle, threads=2)
    data = real_pixels(3, 64, 64, "uint16", seed=2).reshape(1, 3, 64, 64).repeat(4, axis=0)
    data[1] += 7
    with h5py.File(tmp_path / "a.h5", "w") as f:
        ours = f.create_dataset("x", shape=data.shape, dtype="<u2", chunks=(1, 3, 64, 64),
                                **export_mod._filters(cfg))
        hdf5 = f.create_dataset("y", shape=data.shape, dtype="<u2", chunks=(1, 3, 64, 64),
                                **export_mod._filters(cfg))
        with export_mod.ChunkWriter(cfg) as writer:
            writer.write(ours, 0, data)
        hdf5[:] = data
        for i in range(len(data)):
            assert ours.id.read_direct_chunk((i, 0, 0, 0)) == hdf5.id.read_direct_chunk(
                (i, 0, 0, 0))
        np.testing.assert_array_equal(ours[()], data)
