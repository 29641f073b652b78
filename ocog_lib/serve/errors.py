"""Every failure a client can cause, as one JSON body: {"error", "input", "cause"}.

Statuses: 400 a value that does not parse (a date, a number, rescale), 404 something that
is not there (a TMS, a tile outside the data's zooms or extent, dates with no scenes, a
route), 422 a value that parses but cannot be used (an unknown band, operator, reducer,
colormap), 413 an export larger than the server allows, 502 a source file that could not be
read. The cube's refusals are told apart by type (`ocog_lib.cube.errors`), never by
wording. Anything else is a bug: 500, still this body, never a traceback; the server goes
on serving.
"""

from __future__ import annotations

from dataclasses import dataclass

from ocog_lib.cube.errors import (
    ExpressionError,
    NoScenes,
    OutsideData,
    UpstreamError,
    ZoomOutside,
)
from ocog_lib.errors import InputError


class ApiError(InputError):
    """An InputError with the HTTP status and the short kind of error the body names."""

    def __init__(self, what: object, cause: str, *, status: int = 422,
                 error: str = "invalid input"):  # fmt: skip
        super().__init__(what, cause)
        self.status = status
        self.error = error


@dataclass(frozen=True)
class ErrorReply:
    status: int
    body: dict


def reply_for(exc: BaseException, sources: frozenset[str] = frozenset()) -> ErrorReply:
    """The status and body for `exc`; `sources` are the request's file URIs, so an
    InputError that names one of them (a storage read failing) is the upstream's fault."""
    if isinstance(exc, ApiError):
        return ErrorReply(exc.status, _body(exc.error, exc.what, exc.cause))
    if isinstance(exc, InputError):
        if exc.what in sources:
            return ErrorReply(502, _body("upstream read failed", exc.what, exc.cause))
        status, kind = _cube_kind(exc)
        return ErrorReply(status, _body(kind, exc.what, exc.cause))
    if _is_upstream(exc):
        return ErrorReply(502, _body("upstream read failed", _first_line(exc), type(exc).__name__))
    return ErrorReply(500, _body("internal error", "", f"{type(exc).__name__}: "
                                 f"{_first_line(exc)}"))  # fmt: skip


def _cube_kind(exc: InputError) -> tuple[int, str]:
    """Status by the cube's type of refusal (`ocog_lib.cube.errors`); the first match of
    the most specific type wins. Any other InputError is a value that cannot be used."""
    for kind, status, error in _CUBE_KINDS:
        if isinstance(exc, kind):
            return status, error
    return 422, "invalid input"


_CUBE_KINDS = (
    (ZoomOutside, 404, "zoom outside the data"),
    (OutsideData, 404, "outside the data"),
    (NoScenes, 404, "no scenes"),
    (UpstreamError, 502, "upstream read failed"),
    (ExpressionError, 422, "invalid expression"),
)


def _is_upstream(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return True
    try:
        from rasterio.errors import RasterioError
    except ImportError:  # pragma: no cover - rasterio is a dependency
        return False
    return isinstance(exc, RasterioError)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:500] if text else type(exc).__name__


def _body(error: str, what: str, cause: str) -> dict:
    return {"error": error, "input": what, "cause": cause}
