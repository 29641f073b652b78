"""Errors a user can act on: each names the input and the cause."""

from __future__ import annotations


class OcogError(Exception):
    """Base class of every error ocog raises on purpose.

    Picklable whatever a subclass's `__init__` takes (InputError takes two arguments,
    its message is one): errors cross process boundaries (DataLoader workers, pools)
    with their type, message and attributes intact.
    """

    def __reduce__(self):
        return _rebuild, (type(self), self.args, self.__dict__)


def _rebuild(cls: type[OcogError], args: tuple, state: dict) -> OcogError:
    """The error as it was, without calling `__init__` again (whose signature varies)."""
    exc = cls.__new__(cls, *args)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class InputError(OcogError, ValueError):
    """Bad input: a missing or unreadable file, an impossible profile, an unknown name."""

    def __init__(self, what: object, cause: str):
        self.what = str(what)
        self.cause = cause
        super().__init__(f"{self.what}: {cause}")


class UnsupportedLayout(InputError):
    """A TIFF layout the fast path cannot decode (the caller may fall back to GDAL)."""
