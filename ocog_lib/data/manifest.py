"""What a prepared dataset holds: one manifest.json shared by variants, engine and training."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ocog_lib.atomic import atomic_write_text
from ocog_lib.errors import InputError

MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class ManifestItem:
    name: str            # unique within the dataset, e.g. "s2_18TWL" or "bench_00"
    image: str           # path relative to the manifest's folder
    mask: str | None     # label raster (uint8 class ids) relative to the folder, or None
    role: str            # "scene" (training/eval imagery) or "bench" (large benchmark scene)
    tile_id: str = ""    # sensor tile (MGRS id for Sentinel-2, path/row for Landsat)
    sensor: str = ""


@dataclass
class DatasetManifest:
    dataset: str
    classes: dict[int, str]
    items: list[ManifestItem] = field(default_factory=list)
    ignore_index: int = 255
    notes: str = ""
    root: Path | None = None  # folder the relative paths hang off; not serialized

    def image_path(self, item: ManifestItem) -> Path:
        return self._abs(item.image)

    def mask_path(self, item: ManifestItem) -> Path | None:
        return self._abs(item.mask) if item.mask else None

    def by_role(self, role: str) -> list[ManifestItem]:
        return [i for i in self.items if i.role == role]

    def _abs(self, rel: str) -> Path:
        if self.root is None:
            raise InputError(self.dataset, "manifest has no root folder; load it with load()")
        return self.root / rel

    def save(self, folder: Path) -> Path:
        data = {
            "dataset": self.dataset,
            "classes": {str(k): v for k, v in self.classes.items()},
            "ignore_index": self.ignore_index,
            "notes": self.notes,
            "items": [asdict(i) for i in self.items],
        }
        path = Path(folder) / MANIFEST_NAME
        atomic_write_text(path, json.dumps(data, indent=2) + "\n")
        self.root = Path(folder)
        return path

    @classmethod
    def load(cls, folder: Path) -> DatasetManifest:
        path = Path(folder) / MANIFEST_NAME
        if not path.exists():
            raise InputError(path, "no manifest.json: materialize prepared_datasets first")
        try:
            data = json.loads(path.read_text())
            return cls(
                dataset=data["dataset"],
                classes={int(k): v for k, v in data["classes"].items()},
                items=[ManifestItem(**i) for i in data["items"]],
                ignore_index=int(data.get("ignore_index", 255)),
                notes=data.get("notes", ""),
                root=Path(folder),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(path, f"not a valid dataset manifest ({exc})") from exc
