"""A time stack on disk (`stack.json`): dated scenes, one single-band COG per band and scene.

```
{"name": str, "bands": ["B02", ...], "aliases": {"red": "B04", ...},
 "mask": {"kind": "scl" | "bqa", "asset": "SCL" | "BQA"} or null,
 "scenes": [{"id": str, "datetime": "2024-01-15T10:30:00Z", "cloud_cover": 12.5,
             "assets": {"B02": "<relative to the folder, or an absolute path/URI>", ...},
             "scaling": {"B02": [0.0001, -0.1], ...}}]}
```

`scaling` (optional, per scene) maps a band to (scale, offset): its values are DN * scale +
offset before an expression sees them, as STAC's raster:bands say (Sentinel-2 L2A from
processing baseline 04.00 on carries a -0.1 offset, so NDVI over raw DN would be biased).

A band's asset is read as its file's band 1. Loading checks everything a read would
trip over later (a band missing from a scene, an alias to nothing, a date that does not
parse), so a bad stack fails once, naming the scene and the field. Scenes are kept in
time order: `first`/`last` reducers rely on it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path

from ocog_lib.errors import InputError

MASK_KINDS = ("scl", "bqa")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # a band or alias an expression can name

DateLike = datetime | date | str | None


@dataclass(frozen=True)
class Scene:
    id: str
    datetime: datetime  # timezone-aware, UTC
    cloud_cover: float | None  # percent
    assets: dict[str, str]  # band or mask asset -> path relative to the stack, or a URI
    scaling: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class SceneStack:
    name: str
    bands: tuple[str, ...]
    aliases: dict[str, str]
    mask_kind: str | None  # "scl", "bqa" or None
    mask_asset: str | None
    scenes: tuple[Scene, ...]  # oldest first
    root: str  # the folder relative asset paths start from

    @classmethod
    def load(cls, folder_or_stack_json: str | os.PathLike[str]) -> SceneStack:
        """Read and check a stack folder (or its stack.json)."""
        path = Path(folder_or_stack_json)
        if path.is_dir():
            path = path / "stack.json"
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(path, "no stack.json there") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(path, f"cannot read it as JSON ({exc})") from None
        return from_document(doc, root=str(path.parent.resolve()), where=str(path))

    def band_name(self, name: str) -> str:
        """The real band a band name or alias stands for."""
        if name in self.bands:
            return name
        if name in self.aliases:
            return self.aliases[name]
        raise InputError(name, f"not a band of stack {self.name!r} (bands: "
                         f"{', '.join(self.bands)}; aliases: {', '.join(self.aliases) or '-'})")

    def uri(self, scene: Scene, band: str) -> str:
        """Absolute path or URI of one scene's band (or mask asset)."""
        name = band if band == self.mask_asset else self.band_name(band)
        try:
            ref = scene.assets[name]
        except KeyError:
            raise InputError(f"{scene.id}/{name}", "the scene has no such asset") from None
        if "://" in ref or os.path.isabs(ref):
            return ref
        return os.path.normpath(os.path.join(self.root, ref))

    def select(self, start: DateLike = None, end: DateLike = None,
               max_cloud: float | None = None) -> Selection:  # fmt: skip
        """The scenes within [start, end] (inclusive; a date alone means its whole day)
        and at most `max_cloud` percent cloudy, with each scene's reason."""
        lo, hi = parse_when("start", start, end_of_day=False), parse_when("end", end, True)
        if lo is not None and hi is not None and lo > hi:
            raise InputError(f"start={_iso(lo)} end={_iso(hi)}", "start is after end")
        if max_cloud is not None and not (
            isinstance(max_cloud, int | float) and 0 <= max_cloud <= 100
        ):
            raise InputError(f"max_cloud={max_cloud!r}", "must be a percentage 0..100")
        reasons, chosen = [], []
        for scene in self.scenes:
            why = _refusal(scene, lo, hi, max_cloud)
            reasons.append((scene.id, why is None, why or "chosen"))
            if why is None:
                chosen.append(scene)
        return Selection(dataclasses.replace(self, scenes=tuple(chosen)), tuple(reasons))


@dataclass(frozen=True)
class Selection:
    stack: SceneStack  # the same stack with only the chosen scenes
    reasons: tuple[tuple[str, bool, str], ...]  # (scene id, chosen, why), every scene

    def summary(self) -> str:
        """Why scenes were left out, counted: '3 before start, 2 over max_cloud'."""
        counts: dict[str, int] = {}
        for _, chosen, why in self.reasons:
            if not chosen:
                key = why.split(" (")[0]
                counts[key] = counts.get(key, 0) + 1
        return ", ".join(f"{n} {k}" for k, n in counts.items()) or "the stack has no scenes"


def _refusal(scene: Scene, lo: datetime | None, hi: datetime | None,
             max_cloud: float | None) -> str | None:  # fmt: skip
    if lo is not None and scene.datetime < lo:
        return f"before start ({_iso(scene.datetime)} < {_iso(lo)})"
    if hi is not None and scene.datetime > hi:
        return f"after end ({_iso(scene.datetime)} > {_iso(hi)})"
    if max_cloud is not None:
        if scene.cloud_cover is None:
            return "cloud cover unknown (max_cloud is set)"
        if scene.cloud_cover > max_cloud:
            return f"over max_cloud ({scene.cloud_cover:g}% > {max_cloud:g}%)"
    return None


def parse_when(name: str, value: DateLike, end_of_day: bool) -> datetime | None:
    """A UTC datetime from a datetime (naive = UTC), a date or an ISO 8601 string; a date
    alone is its first instant, or with `end_of_day` its last."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
        except ValueError:
            raise InputError(f"{name}={text}", "not an ISO 8601 date (e.g. 2024-01-31 or "
                             "2024-01-31T10:30:00Z)") from None  # fmt: skip
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime.combine(value, time.max if end_of_day else time.min, tzinfo=UTC)
    raise InputError(f"{name}={value!r}", "expected a date, a datetime or an ISO 8601 string")


def _iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def from_document(doc: object, *, root: str, where: str) -> SceneStack:
    """A SceneStack from a parsed stack.json (`where` names it in errors)."""
    if not isinstance(doc, dict):
        raise InputError(where, "stack.json must hold an object")
    name = _field(doc, "name", str, where)
    bands = _names(_field(doc, "bands", list, where), f"{where}: bands")
    aliases = _aliases(doc.get("aliases") or {}, bands, where)
    kind, asset = _mask(doc.get("mask"), where)
    rows = _field(doc, "scenes", list, where)
    if not rows:
        raise InputError(where, "the stack has no scenes")
    scenes = [_scene(row, i, bands, asset, where) for i, row in enumerate(rows)]
    seen: set[str] = set()
    for s in scenes:
        if s.id in seen:
            raise InputError(f"{where}: scene {s.id}", "the id appears twice")
        seen.add(s.id)
    scenes.sort(key=lambda s: (s.datetime, s.id))
    return SceneStack(name, bands, aliases, kind, asset, tuple(scenes), root)


def _field(doc: dict, key: str, kind: type, where: str):
    if key not in doc:
        raise InputError(where, f"missing field {key!r}")
    if not isinstance(doc[key], kind):
        raise InputError(f"{where}: {key}", f"must be a {kind.__name__}")
    return doc[key]


def _names(values: list, where: str) -> tuple[str, ...]:
    if not values:
        raise InputError(where, "no bands")
    for v in values:
        if not isinstance(v, str) or not NAME.match(v):
            raise InputError(f"{where}: {v!r}", "a band name must be a letter or _ then "
                             "letters, digits or _ (expressions name it)")  # fmt: skip
    if len(set(values)) != len(values):
        raise InputError(where, "a band appears twice")
    return tuple(values)


def _aliases(raw: object, bands: tuple[str, ...], where: str) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise InputError(f"{where}: aliases", "must be an object alias -> band")
    for alias, band in raw.items():
        if not NAME.match(alias) or alias in bands:
            raise InputError(f"{where}: alias {alias!r}", "must be a new name (letters, "
                             "digits, _), not a band's")  # fmt: skip
        if band not in bands:
            raise InputError(f"{where}: alias {alias!r}", f"names {band!r}, not a band")
    return dict(raw)


def _mask(raw: object, where: str) -> tuple[str | None, str | None]:
    if raw is None:
        return None, None
    if not isinstance(raw, dict) or raw.get("kind") not in MASK_KINDS:
        raise InputError(f"{where}: mask", f"must be null or {{'kind': one of {MASK_KINDS}, "
                         "'asset': name}")  # fmt: skip
    if not isinstance(raw.get("asset"), str) or not raw["asset"]:
        raise InputError(f"{where}: mask", "needs the name of its asset")
    return raw["kind"], raw["asset"]


def _scene(row: object, i: int, bands: tuple[str, ...], mask: str | None,
           where: str) -> Scene:  # fmt: skip
    label = f"{where}: scenes[{i}]"
    if not isinstance(row, dict):
        raise InputError(label, "must be an object")
    sid = _field(row, "id", str, label)
    label = f"{where}: scene {sid}"
    when = parse_when(f"{label} datetime", _field(row, "datetime", str, label), False)
    cover = row.get("cloud_cover")
    if cover is not None and not (
        isinstance(cover, int | float) and math.isfinite(cover) and 0 <= cover <= 100
    ):
        raise InputError(f"{label} cloud_cover={cover!r}", "must be a percentage 0..100")
    assets = _field(row, "assets", dict, label)
    for need in (*bands, *([mask] if mask else [])):
        if not isinstance(assets.get(need), str) or not assets[need]:
            raise InputError(f"{label}", f"no asset for {need!r}")
    return Scene(sid, when, None if cover is None else float(cover), dict(assets),
                 _scaling(row.get("scaling"), bands, label))


def _scaling(raw: object, bands: tuple[str, ...], label: str) -> dict[str, tuple[float, float]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InputError(f"{label} scaling", "must be an object band -> [scale, offset]")
    out = {}
    for band, pair in raw.items():
        if band not in bands:
            raise InputError(f"{label} scaling", f"names {band!r}, not a band")
        ok = (isinstance(pair, list | tuple) and len(pair) == 2
              and all(isinstance(v, int | float) and math.isfinite(v) for v in pair))
        if not ok or pair[0] == 0:
            raise InputError(f"{label} scaling {band}={pair!r}",
                             "must be [scale, offset], finite numbers, scale not 0")
        out[band] = (float(pair[0]), float(pair[1]))
    return out
