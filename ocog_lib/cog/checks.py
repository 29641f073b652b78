"""Every file of a written variant checked at once, for callers that report rather than raise.

`write_variant(check=True)` stops at the first bad file. The cog_variants asset writes with
check=False and checks here instead, so a failure names every file (a failed, blocking
asset check) rather than only the first. The checks are the same: the COG validator, the
lossless comparison, and ocog's own decoder held to GDAL tile by tile (a file the engine
would decode differently is not a valid variant for it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ocog_lib.cog.profiles import CogProfile, mask_profile
from ocog_lib.cog.validate import check_lossless, first_mismatch, validate_cog
from ocog_lib.data.manifest import DatasetManifest
from ocog_lib.errors import UnsupportedLayout


@dataclass(frozen=True)
class FileCheck:
    """One written file: COG validity, and for a lossless profile its pixels."""

    path: str
    valid_cog: bool
    errors: tuple[str, ...]  # the validator's, when not valid
    lossless_ok: bool | None  # None: a lossy profile, not compared


@dataclass(frozen=True)
class VariantCheck:
    files: tuple[FileCheck, ...]

    @property
    def invalid(self) -> dict[str, list[str]]:
        """Path -> validator errors of every file that is not a valid COG."""
        return {f.path: list(f.errors) for f in self.files if not f.valid_cog}

    @property
    def differing(self) -> list[str]:
        """Paths of the lossless files whose pixels differ from their source."""
        return [f.path for f in self.files if f.lossless_ok is False]

    def annotated(self, rows: list[dict]) -> list[dict]:
        """`rows` (write_variant's, same order) with is_valid_cog and lossless_ok filled."""
        return [{**row, "is_valid_cog": f.valid_cog, "lossless_ok": f.lossless_ok}
                for row, f in zip(rows, self.files, strict=True)]


def _decoder_mismatch(path: str) -> str | None:
    """first_mismatch, for a file the engine reads itself (an untiled one is invalid anyway,
    and the engine would hand it to GDAL)."""
    try:
        return first_mismatch(path)
    except UnsupportedLayout:
        return None


def check_variant_files(manifest: DatasetManifest, profile: CogProfile,
                        rows: list[dict]) -> VariantCheck:
    """Validate each file of write_variant's `rows` (item, kind, path); compare the pixels
    of those written under a lossless profile (masks always) with the prepared source."""
    sources: dict[tuple[str, str], Path] = {}
    for item in manifest.items:
        sources[item.name, "image"] = manifest.image_path(item)
        if item.mask:
            sources[item.name, "mask"] = manifest.mask_path(item)
    lossless = {"image": profile.lossless, "mask": mask_profile(profile).lossless}
    files = []
    for row in rows:
        validation = validate_cog(Path(row["path"]))
        errors = tuple(validation.errors) if not validation.valid else ()
        where = _decoder_mismatch(row["path"])
        if where is not None:
            errors += (f"ocog's decoder differs from GDAL at {where}",)
        same = None
        if lossless[row["kind"]]:
            same = check_lossless(sources[row["item"], row["kind"]], row["path"])
        files.append(FileCheck(row["path"], not errors, errors, same))
    return VariantCheck(tuple(files))
