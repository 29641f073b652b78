"""A package read by byte ranges over HTTP (a real local server), through storage sources."""

from __future__ import annotations

import io

import numpy as np

from ocog_lib.hdf5.dataset import Hdf5Dataset, loader
from ocog_lib.hdf5.remote import ByteSourceFile
from ocog_lib.storage import open_source
from tests.support.rangeserver import RangeServer


def _serve(package) -> dict[str, bytes]:
    files = [package.result.path, *package.result.sidecars.values()]
    return {f"/pkg/{p.name}": p.read_bytes() for p in files}


def test_byte_source_file_reads_like_a_local_file(package):
    path = package.result.path
    data = path.read_bytes()
    f = ByteSourceFile(open_source(path), block_size=4096, cache_blocks=4)
    rng = np.random.default_rng(0)
    for _ in range(200):
        off = int(rng.integers(0, len(data) + 10))
        n = int(rng.choice([1, 7, 4095, 4096, 5000, 20000]))
        whence = int(rng.integers(0, 3))
        base = {io.SEEK_SET: 0, io.SEEK_CUR: f.tell(), io.SEEK_END: len(data)}[whence]
        f.seek(off - base, whence)  # the same absolute offset from each origin
        assert f.tell() == off
        assert f.read(n) == data[off : off + n]
    assert f.seek(0, io.SEEK_END) == len(data) and f.read(10) == b""


def test_remote_package_items_equal_the_local_ones(package):
    local = Hdf5Dataset(package.result.path, "all")
    with RangeServer(_serve(package)) as server:
        uri = f"{server.url}/pkg/{package.result.path.name}"
        remote = Hdf5Dataset(uri, "all")  # validation fetched the .h5 header and the sidecars
        assert remote.info.samples == local.info.samples
        assert remote.info.splits == local.info.splits
        opened = server.requests
        picks = [0, 7, len(local) - 1]
        for i in picks:
            a, b = remote[i], local[i]
            np.testing.assert_array_equal(a["image"].numpy(), b["image"].numpy())
            np.testing.assert_array_equal(a["mask"].numpy(), b["mask"].numpy())
        # per sample one ranged GET per modality chunk, plus a few metadata blocks at open
        assert server.requests - opened <= 2 * len(picks) + 8
        remote.close()
        train = Hdf5Dataset(uri, "train")
        for batch in loader(train, batch_size=4, workers=2, start_method="fork"):
            for k, idx in enumerate(batch["index"].tolist()):
                np.testing.assert_array_equal(batch["image"][k].numpy(),
                                              local[idx]["image"].numpy())


def test_measure_package_streams_a_remote_package(package):
    from ocog_lib.bench.hdf5 import measure_package

    with RangeServer(_serve(package)) as server:
        uri = f"{server.url}/pkg/{package.result.path.name}"
        m = measure_package(uri, batch_size=4, workers=1, seconds=0.2)
    assert m.samples > 0 and m.samples_per_s > 0 and m.startup_s > 0
