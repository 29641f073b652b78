"""Content hashes of written bytes, so every measurement row names exactly what it measured.

A COG variant folder (or an HDF5 package: the .h5 and its sidecars) gets a content
manifest when it is written: each file's size, mtime_ns and BLAKE2b-256 digest, and one
`content_hash` over the sorted (relative path, size, digest) lines. The manifest is written
atomically (temp name + rename) after every file it names, so its hash is the hash of a
finished write.

Reading checks it cheaply: every file is stat'ed and compared with the manifest; a file
whose size differs, a missing file or an extra file is an InputError naming the file and
what changed; a file whose mtime alone differs (a copy, a `touch`) is re-hashed and
accepted, with the manifest refreshed, when its bytes are the recorded ones. `verify_*`
re-hashes every file. A variant or package written before ocog recorded content hashes
(no manifest) gets one on its first read: its bytes are final by then (a variant counts as
written once its manifest.json is there), so that hash names the bytes measured from then
on.

Not part of a variant's content: names starting with '.' (writes' temporaries, hidden
files), GDAL's `*.aux.xml` side files (GDAL may add them on read) and the content manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ocog_lib.atomic import atomic_write_text
from ocog_lib.errors import InputError

CONTENT_NAME = "content.json"  # a variant folder's content manifest
PACKAGE_SUFFIX = ".content.json"  # an HDF5 package's: `<name>.h5.content.json` beside it
ALGORITHM = "blake2b-256"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileEntry:
    size: int
    mtime_ns: int
    digest: str


@dataclass(frozen=True)
class ContentManifest:
    """What a write recorded: the content hash and each file (path relative to `root`)."""

    content_hash: str
    files: dict[str, FileEntry]

    def to_json(self) -> str:
        files = {k: vars(v) for k, v in sorted(self.files.items())}
        doc = {"algorithm": ALGORITHM, "content_hash": self.content_hash, "files": files}
        return json.dumps(doc, indent=2) + "\n"


def file_digest(path: Path) -> str:
    """BLAKE2b-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.blake2b(digest_size=32)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def model_hash(path: str | os.PathLike[str]) -> str | None:
    """A model file's content hash (its digest): what retrieval and compression rows name,
    the weights fixing every embedding and code; None for a model that is not a local file."""
    path = Path(path)
    return file_digest(path) if path.is_file() else None


def content_hash(files: dict[str, FileEntry]) -> str:
    """One hash over sorted (relative path, size, digest): stable across writes of the
    same bytes, whatever the order or time they were written in."""
    h = hashlib.blake2b(digest_size=32)
    for rel in sorted(files):
        h.update(f"{rel}\0{files[rel].size}\0{files[rel].digest}\n".encode())
    return h.hexdigest()


def _entry(path: Path) -> FileEntry:
    st = path.stat()
    return FileEntry(st.st_size, st.st_mtime_ns, file_digest(path))


def _record(manifest_path: Path, root: Path, rels: Sequence[str]) -> ContentManifest:
    files = {rel: _entry(root / rel) for rel in rels}
    manifest = ContentManifest(content_hash(files), files)
    atomic_write_text(manifest_path, manifest.to_json())
    return manifest


def _load(manifest_path: Path) -> ContentManifest:
    try:
        doc = json.loads(manifest_path.read_text())
        files = {k: FileEntry(int(v["size"]), int(v["mtime_ns"]), str(v["digest"]))
                 for k, v in doc["files"].items()}  # fmt: skip
        if doc.get("algorithm") != ALGORITHM:
            raise ValueError(f"algorithm {doc.get('algorithm')!r}, not {ALGORITHM}")
        return ContentManifest(str(doc["content_hash"]), files)
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise InputError(manifest_path, f"not a valid content manifest ({exc})") from exc


def _differences(manifest: ContentManifest, root: Path, rels: Sequence[str] | None,
                 full: bool) -> tuple[list[str], dict[str, FileEntry]]:
    """What differs from the manifest (one line per file), and the entries of files whose
    stat changed but whose bytes did not (to refresh)."""
    problems, touched = [], {}
    if rels is not None:
        problems += [f"{rel}: extra file, not in the content manifest"
                     for rel in sorted(set(rels) - set(manifest.files))]  # fmt: skip
    for rel, want in sorted(manifest.files.items()):
        try:
            st = (root / rel).stat()
        except FileNotFoundError:
            problems.append(f"{rel}: missing")
            continue
        if st.st_size != want.size:
            problems.append(f"{rel}: size {st.st_size} bytes, {want.size} when written")
        elif full or st.st_mtime_ns != want.mtime_ns:
            now = file_digest(root / rel)
            if now != want.digest:
                problems.append(f"{rel}: bytes changed since written (digest {now[:12]}, "
                                f"{want.digest[:12]} when written)")  # fmt: skip
            elif st.st_mtime_ns != want.mtime_ns:
                touched[rel] = FileEntry(st.st_size, st.st_mtime_ns, now)
    return problems, touched


def _checked(manifest_path: Path, root: Path, rels: Sequence[str] | None,
             full: bool = False) -> ContentManifest:
    """The manifest after checking the files against it; InputError naming what changed."""
    manifest = _load(manifest_path)
    problems, touched = _differences(manifest, root, rels, full)
    if problems:
        raise InputError(root, "content differs from its manifest "
                         f"({manifest_path.name}, hash {manifest.content_hash[:12]}): "
                         + "; ".join(problems))  # fmt: skip
    if touched:  # same bytes, new mtimes (a copy): next time the cheap check suffices
        manifest = ContentManifest(manifest.content_hash, {**manifest.files, **touched})
        with contextlib.suppress(OSError):  # a read-only copy is still readable
            atomic_write_text(manifest_path, manifest.to_json())
    return manifest


def folder_files(folder: Path) -> list[str]:
    """The files that make up a variant folder, as sorted paths relative to it."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith(".") or name.endswith(".aux.xml"):
                continue
            rel = Path(root, name).relative_to(folder).as_posix()
            if rel != CONTENT_NAME:
                out.append(rel)
    return sorted(out)


def write_folder_manifest(folder: str | os.PathLike[str]) -> ContentManifest:
    """Hash every file of a just-written variant folder; write its content.json."""
    folder = Path(folder)
    return _record(folder / CONTENT_NAME, folder, folder_files(folder))


def folder_hash(folder: str | os.PathLike[str]) -> str:
    """A variant folder's content hash, checked cheaply against its manifest (made now
    for a variant written before content hashes; see the module doc)."""
    folder = Path(folder)
    path = folder / CONTENT_NAME
    if not path.exists():
        return write_folder_manifest(folder).content_hash
    return _checked(path, folder, folder_files(folder)).content_hash


def verify_folder(folder: str | os.PathLike[str]) -> str:
    """Re-hash every file of a variant folder against its manifest; its content hash."""
    folder = Path(folder)
    path = folder / CONTENT_NAME
    if not path.exists():
        raise InputError(folder, f"no {CONTENT_NAME}: nothing to verify against")
    return _checked(path, folder, folder_files(folder), full=True).content_hash


def package_manifest_path(package: str | os.PathLike[str]) -> Path:
    package = Path(package)
    return package.with_name(package.name + PACKAGE_SUFFIX)


def _package_rels(package: Path, sidecars: Sequence[str | os.PathLike[str]]) -> list[str]:
    rels = [package.name]
    for side in sidecars:
        side = Path(side)
        if side.parent.resolve() != package.parent.resolve():
            raise InputError(side, f"a sidecar of {package.name} lies beside it")
        rels.append(side.name)
    return rels


def write_package_manifest(package: str | os.PathLike[str],
                           sidecars: Sequence[str | os.PathLike[str]] = ()) -> ContentManifest:
    """Hash a just-written package (the file and its sidecars); write its manifest."""
    package = Path(package)
    rels = _package_rels(package, sidecars)
    return _record(package_manifest_path(package), package.parent, rels)


def package_hash(package: str | os.PathLike[str],
                 sidecars: Sequence[str | os.PathLike[str]] = ()) -> str:
    """A package's content hash, checked cheaply (made now for an older package)."""
    package = Path(package)
    path = package_manifest_path(package)
    if not path.exists():
        return write_package_manifest(package, sidecars).content_hash
    return _checked(path, package.parent, _package_rels(package, sidecars)).content_hash


def verify_package(package: str | os.PathLike[str],
                   sidecars: Sequence[str | os.PathLike[str]] = ()) -> str:
    """Re-hash a package's files against its manifest; its content hash."""
    package = Path(package)
    path = package_manifest_path(package)
    if not path.exists():
        raise InputError(package, f"no {path.name}: nothing to verify against")
    rels = _package_rels(package, sidecars)
    return _checked(path, package.parent, rels, full=True).content_hash
