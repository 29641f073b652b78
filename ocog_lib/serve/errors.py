"""Every failure a client can cause, as one JSON body: {"error", "input", "cause"}.

Statuses: 400 a value that does not parse (a date, a number, rescale), 404 something that
is not there (a TMS, a tile outside the data's zooms or extent, dates with no scenes, a
route), 422 a value that parses but cannot be used (an unknown band, operator, reducer,
colormap), 502 a source file that could not be read. Anything else is a bug: 500, still
this body, never a traceback; the server goes on serving.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    """Status by what the cube's message says it refused (its errors share one type)."""
    cause = exc.cause.lower()
    if "zoom too coarse" in cause:
        return 404, "zoom outside the data"
    if "outside" in cause or "intersects" in cause:
        return 404, "outside the data"
    if "no scene" in cause:
        return 404, "no scenes"
    return 422, "invalid input"


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
