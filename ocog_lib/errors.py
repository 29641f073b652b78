"""Errors a user can act on: each names the input and the cause."""

from __future__ import annotations


class OcogError(Exception):
    """Base class of every error ocog raises on purpose."""


class InputError(OcogError, ValueError):
    """Bad input: a missing or unreadable file, an impossible profile, an unknown name."""

    def __init__(self, what: object, cause: str):
        self.what = str(what)
        self.cause = cause
        super().__init__(f"{self.what}: {cause}")


class UnsupportedLayout(InputError):
    """A TIFF layout the fast path cannot decode (the caller may fall back to GDAL)."""
