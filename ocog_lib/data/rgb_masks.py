"""Label rasters coded as colours (ISPRS Vaihingen and Potsdam) to class ids.

Each class has one exact RGB colour. Black (0, 0, 0) marks the boundary pixels of ISPRS's
eroded ground truth (`*_noBoundary`) and becomes the ignore index, as does any colour
outside the palette; the decoder counts those so a preparer can refuse a file that is not
a colour-coded label at all (an orthophoto passed by mistake, a JPEG-compressed copy).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ocog_lib.errors import InputError

# ISPRS 2D Semantic Labeling (Vaihingen, Potsdam): class id -> (name, colour)
ISPRS_CLASSES: dict[int, tuple[str, tuple[int, int, int]]] = {
    0: ("impervious_surfaces", (255, 255, 255)),
    1: ("building", (0, 0, 255)),
    2: ("low_vegetation", (0, 255, 255)),
    3: ("tree", (0, 255, 0)),
    4: ("car", (255, 255, 0)),
    5: ("clutter", (255, 0, 0)),
}
ISPRS_BOUNDARY = (0, 0, 0)
IGNORE_INDEX = 255


def _code(rgb: np.ndarray) -> np.ndarray:
    """(3, h, w) uint8 -> (h, w) uint32 colour codes 0xRRGGBB."""
    r, g, b = (rgb[i].astype(np.uint32) for i in range(3))
    return (r << 16) | (g << 8) | b


def colour_name(code: int) -> str:
    return f"({code >> 16}, {(code >> 8) & 255}, {code & 255})"


@dataclass
class DecodeStats:
    """Pixels that matched no class colour (ignore colours excluded), by colour."""

    pixels: int = 0
    unknown: int = 0
    colours: Counter = field(default_factory=Counter)  # value -> pixels
    describe: Callable[[int], str] = colour_name  # how to print a value

    def add(self, other: DecodeStats) -> None:
        self.pixels += other.pixels
        self.unknown += other.unknown
        self.colours.update(other.colours)
        self.describe = other.describe

    @property
    def unknown_fraction(self) -> float:
        return self.unknown / self.pixels if self.pixels else 0.0

    def examples(self, n: int = 3) -> str:
        return ", ".join(f"{self.describe(c)} x{k}" for c, k in self.colours.most_common(n))


class RgbMaskDecoder:
    """Maps exact colours to class ids; ignore colours and unknown colours to `ignore_index`."""

    def __init__(self, colours: dict[tuple[int, int, int], int],
                 ignore_colours: tuple[tuple[int, int, int], ...] = (ISPRS_BOUNDARY,),
                 ignore_index: int = IGNORE_INDEX):
        if ignore_index in colours.values():
            raise InputError(f"ignore_index {ignore_index}", "is also a class id")
        codes = {(r << 16) | (g << 8) | b: cid for (r, g, b), cid in colours.items()}
        order = sorted(codes)
        self.codes = np.array(order, dtype=np.uint32)
        self.ids = np.array([codes[c] for c in order], dtype=np.uint8)
        self.ignore_codes = np.array([(r << 16) | (g << 8) | b for r, g, b in ignore_colours],
                                     dtype=np.uint32)
        self.ignore_index = ignore_index

    def decode(self, rgb: np.ndarray) -> tuple[np.ndarray, DecodeStats]:
        """(3, h, w) or (4, h, w) uint8 colours -> (h, w) uint8 class ids, and stats."""
        if rgb.ndim != 3 or rgb.shape[0] not in (3, 4) or rgb.dtype != np.uint8:
            raise InputError(f"array {rgb.shape} {rgb.dtype}",
                             "an RGB-coded label needs 3 (or 4) uint8 bands")
        code = _code(rgb)
        pos = np.searchsorted(self.codes, code).clip(0, len(self.codes) - 1)
        known = self.codes[pos] == code
        ids = np.where(known, self.ids[pos], np.uint8(self.ignore_index)).astype(np.uint8)
        unknown = ~known & ~np.isin(code, self.ignore_codes)
        stats = DecodeStats(pixels=code.size, unknown=int(unknown.sum()))
        if stats.unknown:
            values, counts = np.unique(code[unknown], return_counts=True)
            top = np.argsort(counts)[::-1][:10]
            stats.colours.update({int(values[i]): int(counts[i]) for i in top})
        return ids, stats


def isprs_decoder() -> RgbMaskDecoder:
    return RgbMaskDecoder({colour: cid for cid, (_, colour) in ISPRS_CLASSES.items()})


def encode(ids: np.ndarray, classes: dict[int, tuple[str, tuple[int, int, int]]] = ISPRS_CLASSES,
           ignore_colour: tuple[int, int, int] = ISPRS_BOUNDARY) -> np.ndarray:
    """(h, w) class ids -> (3, h, w) uint8 colours: the inverse of decoding (for tests)."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[:] = ignore_colour
    for cid, (_, colour) in classes.items():
        lut[cid] = colour
    return lut[ids].transpose(2, 0, 1).copy()
