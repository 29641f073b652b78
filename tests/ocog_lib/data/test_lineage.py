"""Content hashes: stable over the same bytes, checked cheaply on read, re-hashed on verify."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ocog_lib.data.lineage import (
    CONTENT_NAME,
    file_digest,
    folder_hash,
    model_hash,
    package_hash,
    package_manifest_path,
    verify_folder,
    verify_package,
    write_folder_manifest,
    write_package_manifest,
)
from ocog_lib.errors import InputError

FILES = {"manifest.json": b'{"dataset": "ds"}\n', "scenes/a.tif": bytes(range(256)) * 64,
         "masks/a.tif": b"\x01" * 999}  # fmt: skip


def _folder(root: Path, files: dict[str, bytes] = FILES) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def _flip_byte(path: Path, keep_mtime: bool = False) -> None:
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_the_hash_names_the_bytes_not_the_write(tmp_path):
    first = write_folder_manifest(_folder(tmp_path / "one"))
    os.utime(tmp_path / "one" / "scenes/a.tif", ns=(1, 1))  # another time, same bytes
    again = write_folder_manifest(_folder(tmp_path / "two", dict(reversed(FILES.items()))))
    assert again.content_hash == first.content_hash
    assert set(first.files) == set(FILES)  # relative paths; content.json not among them
    assert first.files["scenes/a.tif"].digest == file_digest(tmp_path / "one/scenes/a.tif")
    changed = dict(FILES, **{"scenes/a.tif": FILES["scenes/a.tif"][:-1] + b"\x00"})  # 1 byte
    other = write_folder_manifest(_folder(tmp_path / "three", changed))
    assert other.content_hash != first.content_hash
    renamed = {("scenes/b.tif" if k == "scenes/a.tif" else k): v for k, v in FILES.items()}
    assert write_folder_manifest(_folder(tmp_path / "four", renamed)).content_hash != (
        first.content_hash)


def test_reading_catches_a_changed_missing_or_extra_file_and_names_it(tmp_path):
    folder = _folder(tmp_path / "v")
    recorded = write_folder_manifest(folder).content_hash
    assert folder_hash(folder) == recorded
    _flip_byte(folder / "scenes/a.tif")  # same size, new mtime: re-hashed
    with pytest.raises(InputError, match=r"scenes/a\.tif: bytes changed since written"):
        folder_hash(folder)
    _flip_byte(folder / "scenes/a.tif")  # back to the written bytes
    assert folder_hash(folder) == recorded
    (folder / "masks/a.tif").write_bytes(b"\x01" * 1000)
    with pytest.raises(InputError, match=r"masks/a\.tif: size 1000 bytes, 999 when written"):
        folder_hash(folder)
    (folder / "masks/a.tif").unlink()
    with pytest.raises(InputError, match=r"masks/a\.tif: missing"):
        folder_hash(folder)
    _folder(folder, {"masks/a.tif": FILES["masks/a.tif"], "scenes/extra.tif": b"x"})
    with pytest.raises(InputError, match=r"scenes/extra\.tif: extra file"):
        folder_hash(folder)


def test_a_touched_file_is_accepted_once_rehashed_and_verify_rehashes_all(tmp_path):
    folder = _folder(tmp_path / "v")
    recorded = write_folder_manifest(folder).content_hash
    os.utime(folder / "scenes/a.tif", ns=(5, 5))  # a copy without its times
    assert folder_hash(folder) == recorded
    doc = json.loads((folder / CONTENT_NAME).read_text())
    assert doc["files"]["scenes/a.tif"]["mtime_ns"] == 5  # refreshed: cheap next time
    _flip_byte(folder / "scenes/a.tif", keep_mtime=True)  # what the cheap check cannot see
    assert folder_hash(folder) == recorded
    with pytest.raises(InputError, match=r"scenes/a\.tif: bytes changed"):
        verify_folder(folder)


def test_an_older_folder_gets_its_manifest_on_first_read(tmp_path):
    folder = _folder(tmp_path / "old")
    (folder / ".ocog-tmp-host-1-abcdef01").mkdir()  # a write's temporary: not content
    (folder / "scenes/a.tif.aux.xml").write_text("<PAMDataset/>")
    assert not (folder / CONTENT_NAME).exists()
    first = folder_hash(folder)
    assert (folder / CONTENT_NAME).exists()
    assert first == write_folder_manifest(_folder(tmp_path / "new")).content_hash
    with pytest.raises(InputError, match="nothing to verify against"):
        verify_folder(tmp_path / "nothing")


def test_a_package_hash_covers_the_file_and_its_sidecars(tmp_path):
    pkg, side = tmp_path / "p.h5", tmp_path / "p_band_stats.json"
    pkg.write_bytes(b"\x89HDF" * 100)
    side.write_text("{}")
    recorded = write_package_manifest(pkg, [side]).content_hash
    assert package_manifest_path(pkg).name == "p.h5.content.json"
    assert package_hash(pkg, [side]) == verify_package(pkg, [side]) == recorded
    side.write_text("[]")
    with pytest.raises(InputError, match=r"p_band_stats\.json: bytes changed"):
        package_hash(pkg, [side])
    assert model_hash(pkg) == file_digest(pkg) and model_hash(tmp_path / "no.pt") is None
