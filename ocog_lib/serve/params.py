"""A request's query, parsed and checked before anything is read: `TileQuery`, `parse_*`.

Each refusal names the query parameter and the value (ApiError: 400 when it does not
parse, 422 when it parses but cannot be used), so a client sees what to fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from ocog_lib.cube.stack import parse_when
from ocog_lib.errors import InputError
from ocog_lib.serve.config import DEFAULT_EXPRESSION, DEFAULT_RESCALE
from ocog_lib.serve.errors import ApiError

RESAMPLINGS = ("nearest", "bilinear")
FORMATS = ("png", "npy", "tif")


@dataclass(frozen=True)
class TileQuery:
    """Everything besides the tile's address that decides its content."""

    expression: str
    start: datetime | None = None
    end: datetime | None = None
    max_cloud: float | None = None
    reducer: str = "median"
    p: float | None = None
    rescale: tuple[float, float] | None = None
    colormap: str = "viridis"
    resampling: str = "nearest"

    def key_args(self, fmt: str) -> dict:
        """The arguments an ETag names; the stretch and colours only where they show (png)."""
        args = {"expression": self.expression, "start": self.start, "end": self.end,
                "max_cloud": self.max_cloud, "reducer": self.reducer, "p": self.p,
                "resampling": self.resampling, "fmt": fmt}  # fmt: skip
        if fmt == "png":
            args |= {"rescale": self.rescale, "colormap": self.colormap}
        return args


def parse_date(name: str, text: str | None, *, end_of_day: bool = False) -> datetime | None:
    """ISO 8601 date or date-time in UTC, read as the cube reads it (a date alone is its
    first instant, or with `end_of_day` its last; no zone means UTC)."""
    try:
        return parse_when(name, text, end_of_day)
    except InputError as exc:
        raise ApiError(exc.what, exc.cause, status=400, error="bad date") from None


def parse_number(name: str, text: str | None, lo: float, hi: float) -> float | None:
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ApiError(f"{name}={text}", "not a number", status=400,
                       error="bad number") from None  # fmt: skip
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ApiError(f"{name}={text}", f"must be in {lo:g}..{hi:g}", error="bad number")
    return value


def parse_rescale(text: str | None) -> tuple[float, float] | None:
    """`min,max` with min < max, both finite."""
    if text is None or text == "":
        return None
    parts = text.split(",")
    try:
        lo, hi = (float(v) for v in parts)
    except ValueError:
        raise ApiError(f"rescale={text}", "expected two numbers, min,max (e.g. -1,1)",
                       status=400, error="bad rescale") from None  # fmt: skip
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ApiError(f"rescale={text}", "min and max must be finite with min < max",
                       error="bad rescale")  # fmt: skip
    return lo, hi


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ApiError(f"{name}={value}", f"unknown {name}; one of {', '.join(choices)}",
                       error=f"unknown {name}")  # fmt: skip
    return value


def png_rescale(query: TileQuery) -> tuple[float, float]:
    """The stretch a PNG uses: the one given, else -1,1 for the default NDVI; any other
    expression has no stretch that holds for all its tiles, so one must be given."""
    if query.rescale is not None:
        return query.rescale
    if query.expression.replace(" ", "") == DEFAULT_EXPRESSION:
        return DEFAULT_RESCALE
    raise ApiError(f"expression={query.expression}", "a PNG of this expression needs "
                   "rescale=min,max (only the default NDVI has one, -1,1); npy and tif "
                   "need none", error="rescale required")  # fmt: skip
