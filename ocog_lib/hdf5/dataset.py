"""A PyTorch map-style dataset over a package, safe with DataLoader workers (fork or spawn).

The package is validated once when the dataset is made (which opens and closes the file);
the h5py file the samples are read from is opened lazily, in the process that reads, and
reopened when the process id changes. A handle is never pickled (spawn) and a handle
inherited through fork is never used: HDF5 file state must not be shared between
processes. `loader()` closes the parent's handle before workers start.

Items match the engine's batches: `image` (C, H, W) in the stored dtype, or float32 when
normalized with band_stats.json ((x - mean) / std per band; nodata pixels become 0), `mask`
(H, W) uint8 where the package has labels, `window` (3,) = (file, row, col), and `index`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from ocog_lib.errors import InputError
from ocog_lib.hdf5 import layout as L
from ocog_lib.hdf5.remote import open_h5
from ocog_lib.hdf5.validate import PackageInfo, validate_package

ALL = "all"


class Hdf5Dataset(torch.utils.data.Dataset):
    """Samples of one split of a package (or all of them with split="all")."""

    def __init__(
        self,
        uri: str | os.PathLike[str],
        split: str = "train",
        *,
        normalize: bool = False,
        splits_path: str | os.PathLike[str] | None = None,
        source_opts: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.uri = str(uri)
        self.source_opts = dict(source_opts or {})
        self.info: PackageInfo = validate_package(
            self.uri, splits_path=splits_path, source_opts=self.source_opts
        )
        if split == ALL:
            self.indices = np.arange(self.info.samples, dtype=np.int64)
        elif split in L.SPLITS:
            self.indices = np.asarray(self.info.splits[split], dtype=np.int64)
        else:
            raise InputError(f"split {split!r}", f"choose one of {[*L.SPLITS, ALL]}")
        self.split = split
        self.image_key = self.info.image_modality
        self.label_key = self.info.label_modality
        self.normalize = normalize
        stats = self.info.band_stats[self.image_key]
        self.mean = np.asarray(stats["mean"], dtype=np.float32)[:, None, None]
        std = np.asarray(stats["std"], dtype=np.float32)
        self.std = np.where(std > 0, std, 1.0).astype(np.float32)[:, None, None]
        self._h5 = None
        self._dsets: dict[str, Any] = {}
        self._inherited: list = []
        self._pid = -1

    def __len__(self) -> int:
        return len(self.indices)

    def _datasets(self) -> dict[str, Any]:
        pid = os.getpid()
        if self._h5 is None or self._pid != pid:
            if self._h5 is not None:
                # inherited through fork: kept referenced (not closed, not used), so its
                # copied state is never torn down here
                self._inherited.append(self._h5)
            self._h5 = open_h5(self.uri, **self.source_opts)
            self._pid = pid
            keys = [self.image_key, *([self.label_key] if self.label_key else [])]
            self._dsets = {k: self._h5[k] for k in keys}
        return self._dsets

    def __getitem__(self, i: int) -> dict[str, Any]:
        idx = int(self.indices[i])
        dsets = self._datasets()
        image = dsets[self.image_key][idx]
        if self.normalize:
            valid = image != self.info.nodata
            image = ((image.astype(np.float32) - self.mean) / self.std) * valid
        item: dict[str, Any] = {"image": torch.from_numpy(np.ascontiguousarray(image))}
        if self.label_key:
            item["mask"] = torch.from_numpy(dsets[self.label_key][idx, 0])
        item["window"] = torch.from_numpy(self.info.windows[idx].copy())
        item["index"] = idx
        return item

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_h5"] = None
        state["_dsets"] = {}
        state["_inherited"] = []
        state["_pid"] = -1
        return state

    def close(self) -> None:
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5 = None
        self._dsets = {}
        self._pid = -1


def loader(
    dataset: Hdf5Dataset,
    *,
    batch_size: int = 32,
    workers: int = 0,
    shuffle: bool = False,
    seed: int = 0,
    start_method: str | None = None,
    prefetch: int = 2,
    persistent_workers: bool = False,
    drop_last: bool = False,
) -> torch.utils.data.DataLoader:
    """A DataLoader over the dataset; closes this process's handle first (fork safety)."""
    dataset.close()
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=workers,
        prefetch_factor=prefetch if workers > 0 else None,
        persistent_workers=persistent_workers and workers > 0,
        multiprocessing_context=start_method if workers > 0 else None,
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available(),
    )
