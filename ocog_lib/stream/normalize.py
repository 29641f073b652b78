"""Per-band normalisation applied while the engine copies a patch into its batch.

`out = source * scale + offset`, one (scale, offset) per *selected* band, in the order of
`StreamConfig.bands`. Done in the copy from decoded tile to batch tensor, it costs no
second pass over the batch on the device, which is what a training loop's
`(x - mean) / std` was. Imports nothing heavy: the config imports it without torch.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass

from ocog_lib.errors import InputError

# output dtypes a normalised batch can be in: the affine map makes fractions
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def _numbers(what: str, values: object) -> tuple[float, ...]:
    """`values` as a non-empty tuple of finite floats, or an InputError naming them."""
    if isinstance(values, str | bytes) or not hasattr(values, "__iter__"):
        raise InputError(f"{what} {values!r}", "give one number per selected band")
    out = tuple(values)
    if not out:
        raise InputError(f"{what} ()", "empty: give one number per selected band")
    for v in out:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise InputError(f"{what} {out!r}", f"{v!r} is not a finite number")
    return tuple(float(v) for v in out)


@dataclass(frozen=True)
class Normalization:
    """`out = source * scale + offset` per selected band (float32 arithmetic for float32,
    float16 and bfloat16 output, float64 for float64), in the engine's one patch copy."""

    scale: tuple[float, ...]
    offset: tuple[float, ...]

    def __post_init__(self) -> None:
        scale = _numbers("normalize scale", self.scale)
        offset = _numbers("normalize offset", self.offset)
        if len(scale) != len(offset):
            raise InputError(f"normalize scale {scale} and offset {offset}",
                             f"{len(scale)} scales for {len(offset)} offsets")  # fmt: skip
        if 0.0 in scale:
            raise InputError(f"normalize scale {scale}", "a scale of 0 erases its band")
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "offset", offset)

    @classmethod
    def from_mean_std(cls, mean: object, std: object) -> Normalization:
        """`(x - mean) / std`, as `x * (1/std) + (-mean/std)`."""
        mean = _numbers("normalize mean", mean)
        std = _numbers("normalize std", std)
        if len(mean) != len(std):
            raise InputError(f"normalize mean {mean} and std {std}",
                             f"{len(mean)} means for {len(std)} stds")  # fmt: skip
        if any(s <= 0 for s in std):
            raise InputError(f"normalize std {std}", "every std must be > 0")
        offset = tuple(-m / s for m, s in zip(mean, std, strict=True))
        return cls(tuple(1.0 / s for s in std), offset)

    @classmethod
    def from_scale_offset(cls, scale: object, offset: object) -> Normalization:
        return cls(_numbers("normalize scale", scale), _numbers("normalize offset", offset))

    @classmethod
    def coerce(cls, value: object) -> Normalization | None:
        """A Normalization from what a config file holds: {"mean", "std"} or {"scale",
        "offset"} (what `dataclasses.asdict` of a StreamConfig writes), or None."""
        if value is None or isinstance(value, Normalization):
            return value
        if isinstance(value, Mapping):
            keys = set(value)
            if keys == {"mean", "std"}:
                return cls.from_mean_std(value["mean"], value["std"])
            if keys == {"scale", "offset"}:
                return cls.from_scale_offset(value["scale"], value["offset"])
        raise InputError(f"normalize {value!r}",
                         "give a Normalization, {'mean': [...], 'std': [...]} or "
                         "{'scale': [...], 'offset': [...]}")  # fmt: skip

    @property
    def band_count(self) -> int:
        return len(self.scale)

    def check_bands(self, n: int, where: str) -> None:
        """One (scale, offset) per selected band: `where` (a file) gives `n` of them."""
        if self.band_count != n:
            raise InputError(
                f"normalize with {self.band_count} scale/offset values",
                f"{where} gives {n} selected bands: give one value per band",
            )
