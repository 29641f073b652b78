"""The cube's refusals by kind, so a caller (the tile server) can tell them apart by type.

Each is an InputError naming the input and the cause; the kinds say whose fault it is:
- ExpressionError: the band math does not parse, or names an unknown band, operator or
  function (the client's expression).
- OutsideData: the tile, point or box misses every selected scene, or the zoom is outside
  the tile matrix set or too coarse for the files' overviews (ZoomOutside).
- NoScenes: the dates and cloud limit select no scene.
- UpstreamError: a source file could not be read (its URI is the input).
Everything else the cube refuses (a reducer, a resampling, a box too large) stays a plain
InputError.
"""

from __future__ import annotations

from ocog_lib.errors import InputError


class CubeError(InputError):
    """Base of the cube's typed refusals."""


class ExpressionError(CubeError):
    """Band math that does not parse, or names an unknown band, operator or function."""


class OutsideData(CubeError):
    """A tile, point or box where the selected scenes have no pixel."""


class ZoomOutside(OutsideData):
    """A zoom outside the tile matrix set's, or too coarse for the files' overviews."""


class NoScenes(CubeError):
    """Dates and cloud limit that select no scene of the stack."""


class UpstreamError(CubeError):
    """A source file that could not be read; `what` is its URI."""
