"""Where a dataset's written COG variants and their files are: one lookup for every reader.

A variant lives in `Settings.variant_dir(dataset, variant)` and counts as written once its
manifest.json is there: write_variant saves the manifest after every file, so a folder
without one is an interrupted or running write, never a variant to read. Every lookup
checks the folder against its content manifest (data.lineage): a changed, missing or extra
file is an InputError naming it, and `variant_content_hash` is what a measurement row of
the variant records.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from ocog_lib.data.lineage import folder_hash
from ocog_lib.data.manifest import MANIFEST_NAME, DatasetManifest
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings


class VariantPaths(NamedTuple):
    """Image and mask paths of a written variant; masks are [] unless every image has one."""

    images: list[str]
    masks: list[str]


class TrainingPaths(NamedTuple):
    """Image and mask paths of a written variant, and each one's path under the variant
    folder (images first, then masks: the keys they are uploaded under)."""

    images: list[str]
    masks: list[str]
    relpaths: list[str]


def variant_written(dataset: str, variant: str, settings: Settings) -> bool:
    """Whether the variant's folder holds a finished write."""
    return (settings.variant_dir(dataset, variant) / MANIFEST_NAME).exists()


def variant_folder(dataset: str, variant: str, settings: Settings) -> Path:
    """The folder of a written variant; InputError saying how to write it when it is not."""
    folder = settings.variant_dir(dataset, variant)
    if not (folder / MANIFEST_NAME).exists():
        raise InputError(
            folder,
            f"variant '{variant}' of '{dataset}' is not written yet: materialize "
            f"cog_variants[{dataset}|{variant}] (or `ocog variants write`) first",
        )
    folder_hash(folder)  # the bytes are still the ones written (cheap: sizes and mtimes)
    return folder


def variant_content_hash(dataset: str, variant: str, settings: Settings) -> str:
    """The content hash of a written variant's bytes, checked (see data.lineage)."""
    return folder_hash(variant_folder(dataset, variant, settings))


def _role_paths(manifest: DatasetManifest, role: str) -> VariantPaths:
    """The items of `role` (every item when none has it)."""
    items = manifest.by_role(role) or manifest.items
    images = [str(manifest.image_path(i)) for i in items]
    masks = [str(manifest.mask_path(i)) for i in items if i.mask]
    return VariantPaths(images, masks if len(masks) == len(images) else [])


def bench_files(
    dataset: str, variant: str, settings: Settings | None = None, role: str = "bench"
) -> VariantPaths:
    """Image and mask paths of a dataset's variant (benchmark scenes by default)."""
    settings = settings or Settings.from_env()
    return _role_paths(DatasetManifest.load(variant_folder(dataset, variant, settings)), role)


def variant_files(
    dataset: str, variant: str, settings: Settings, role: str = "scene"
) -> TrainingPaths:
    """The files training streams from a written variant; masks required."""
    folder = variant_folder(dataset, variant, settings)
    manifest = DatasetManifest.load(folder)
    images, masks = _role_paths(manifest, role)
    if not masks:
        raise InputError(folder, "no masks for these images: cannot train")
    rels = [str(Path(p).relative_to(manifest.root)) for p in images + masks]
    return TrainingPaths(images, masks, rels)
