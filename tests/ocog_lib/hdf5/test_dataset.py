"""The PyTorch dataset: splits, normalization, and DataLoader workers (fork and spawn)."""

from __future__ import annotations

import json
import pickle

import h5py
import numpy as np
import pytest
import torch

from ocog_lib.errors import InputError
from ocog_lib.hdf5.dataset import Hdf5Dataset, loader
from tests.support.hdf5pkg import cog_window


@pytest.fixture(scope="module")
def stored(package):
    with h5py.File(package.result.path, "r") as f:
        return f["image"][()], f["label"][:, 0], f["metadata"][()]


def test_items_of_a_split_are_the_stored_samples_and_cog_windows(package, stored):
    image, label, meta = stored
    splits = json.loads(package.result.sidecars["splits"].read_text())
    for split in ("train", "val", "test"):
        ds = Hdf5Dataset(package.result.path, split)
        assert len(ds) == len(splits[split])
        for k, idx in enumerate(splits[split]):
            item = ds[k]
            assert item["index"] == idx and item["image"].dtype == torch.uint16
            np.testing.assert_array_equal(item["image"].numpy(), image[idx])
            np.testing.assert_array_equal(item["mask"].numpy(), label[idx])
            f, r, c = item["window"].tolist()
            assert (f, r, c) == (meta["file"][idx], meta["row"][idx], meta["col"][idx])
        ds.close()
    ds = Hdf5Dataset(package.result.path, "all")
    assert len(ds) == package.result.samples
    scene = package.scenes[int(meta["file"][3])]
    np.testing.assert_array_equal(
        ds[3]["image"].numpy(), cog_window(scene.image, int(meta["row"][3]), int(meta["col"][3]),
                                           128)
    )
    with pytest.raises(InputError, match="split 'training'"):
        Hdf5Dataset(package.result.path, "training")


def test_normalization_uses_band_stats_and_zeroes_nodata(package, stored):
    image = stored[0]
    stats = json.loads(package.result.sidecars["band_stats"].read_text())["image"]
    mean = np.array(stats["mean"], dtype=np.float32)[:, None, None]
    std = np.array(stats["std"], dtype=np.float32)[:, None, None]
    ds = Hdf5Dataset(package.result.path, "all", normalize=True)
    for i in (0, len(ds) - 1):
        x = image[i]
        want = np.where(x != 0, (x.astype(np.float32) - mean) / std, 0.0)
        got = ds[i]["image"]
        assert got.dtype == torch.float32
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-6)


def _all_batches(dl) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    idx, imgs, masks = [], [], []
    for batch in dl:
        idx.append(batch["index"].numpy())
        imgs.append(batch["image"].numpy())
        masks.append(batch["mask"].numpy())
    return np.concatenate(idx), np.concatenate(imgs), np.concatenate(masks)


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_two_workers_deliver_every_sample_intact(package, stored, start_method):
    image, label, _ = stored
    ds = Hdf5Dataset(package.result.path, "train")
    ds[0]  # the parent has read (and holds a handle) before the workers start
    dl = loader(ds, batch_size=5, workers=2, start_method=start_method, shuffle=True, seed=1)
    idx, imgs, masks = _all_batches(dl)
    assert sorted(idx.tolist()) == sorted(ds.indices.tolist())
    np.testing.assert_array_equal(imgs, image[idx])
    np.testing.assert_array_equal(masks, label[idx])


def test_a_handle_inherited_through_fork_is_not_used(package, stored):
    image = stored[0]
    ds = Hdf5Dataset(package.result.path, "all")
    ds[1]  # parent handle open; a plain DataLoader forks with it (no loader() to close it)
    dl = torch.utils.data.DataLoader(ds, batch_size=8, num_workers=2,
                                     multiprocessing_context="fork")
    idx, imgs, _ = _all_batches(dl)
    np.testing.assert_array_equal(imgs, image[idx])
    assert ds[2]["index"] == 2  # and the parent's own handle still works


def test_pickling_drops_the_handle(package):
    ds = Hdf5Dataset(package.result.path, "val")
    first = ds[0]["image"]
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._h5 is None
    assert torch.equal(clone[0]["image"], first)
