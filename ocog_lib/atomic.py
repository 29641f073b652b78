"""Write-then-rename, so a final name never holds a half-written file."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it into place only on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        for leftover in (tmp, Path(str(tmp) + ".aux.xml"), Path(str(tmp) + ".ovr")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def atomic_write_text(final: str | os.PathLike[str], text: str) -> None:
    with atomic_path(final) as tmp:
        tmp.write_text(text)


def claim_path(path: str | os.PathLike[str], claimed: str | os.PathLike[str]) -> bool:
    """Rename `path` to `claimed` if it is still there: of claimers racing for one file,
    exactly one rename succeeds, so exactly one of them works on it."""
    try:
        os.rename(path, claimed)
    except FileNotFoundError:
        return False
    return True
