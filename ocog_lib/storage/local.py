"""Local files read with `os.pread` (releases the GIL), pinned to the file first opened."""

from __future__ import annotations

import os
from typing import Any

from ocog_lib.errors import InputError
from ocog_lib.storage.source import ByteSource, track_source


class LocalFile(ByteSource):
    """A local file read with pread; one descriptor per process, opened on first use.

    The file is pinned to what it was when first opened (device, inode, size, mtime,
    pickled along to workers): a read finds the file changed in place, truncated,
    replaced or deleted since, and fails naming it, rather than hand back bytes of
    another file. One stat per read: nothing next to a decode or a patch copy.
    """

    def __init__(self, path: str | os.PathLike[str], _pinned: tuple | None = None):
        self.path = str(path)
        self.uri = self.path
        self._fd: int | None = None
        self._pid = -1
        self._pinned = _pinned  # (dev, ino, size, mtime_ns) when first opened
        track_source(self)

    def __getstate__(self) -> dict:
        return {"path": self.path, "pinned": self._pinned}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state.get("pinned"))

    def __repr__(self) -> str:
        return f"LocalFile({self.path!r})"

    def _handle(self) -> int:
        pid = os.getpid()
        if self._fd is None or self._pid != pid:
            with self._lock:
                if self._fd is None or self._pid != pid:
                    fd = self._open()
                    try:
                        self._pin(os.fstat(fd))
                    except BaseException:
                        os.close(fd)
                        raise
                    self._fd, self._pid = fd, pid
        return self._fd

    def _open(self) -> int:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            raise InputError(self.path, "file not found") from None
        except IsADirectoryError:
            raise InputError(self.path, "is a directory, not a file") from None
        except PermissionError:
            raise InputError(self.path, "permission denied") from None
        except OSError as exc:
            raise InputError(self.path, f"cannot open it ({exc.strerror})") from None
        if os.path.isdir(self.path):  # os.open opens directories read-only
            os.close(fd)
            raise InputError(self.path, "is a directory, not a file")
        return fd

    def _pin(self, st: os.stat_result) -> None:
        """Record the file on first open; a later open (another process) must find it."""
        if self._pinned is None:
            self._pinned = _identity(st)
        else:
            self._check(st)

    def _check(self, st: os.stat_result | None = None) -> None:
        if st is None:
            try:
                st = os.stat(self.path)
            except OSError:
                raise InputError(self.path, "changed while streaming: the file is gone") from None
        now = _identity(st)
        if now == self._pinned:
            return
        dev, ino, size, _ = self._pinned
        if (now[0], now[1]) != (dev, ino):
            what = "replaced by another file"
        elif now[2] != size:
            what = f"{size} bytes when opened, now {now[2]}"
        else:
            what = "modified in place (mtime)"
        raise InputError(self.path, f"changed while streaming: {what}")

    def size(self) -> int:
        return os.fstat(self._handle()).st_size

    def read(self, offset: int, length: int) -> bytes:
        fd = self._handle()
        try:
            data = os.pread(fd, length, offset)
        except OSError as exc:
            raise InputError(self.path, f"read failed ({exc.strerror})") from None
        self._after_read(offset, length, len(data))
        return data

    def read_into(self, buf: Any, offset: int, *, verify: bool = True) -> None:
        """Fill the writable buffer `buf` with the file's bytes at `offset`, or raise.

        `verify=False` leaves the check that the file is still the one opened to the
        caller (`verify()`, once for many reads: a path lookup a read cost a tenth of the
        direct path's time); a short read is still checked, and raised, here."""
        fd = self._handle()
        view = memoryview(buf).cast("B")
        try:
            got = os.preadv(fd, [view], offset) if len(view) else 0
        except OSError as exc:
            raise InputError(self.path, f"read failed ({exc.strerror})") from None
        self._after_read(offset, len(view), got, verify)

    def verify(self) -> None:
        """Raise an InputError if the file at the path is no longer the one opened (gone,
        replaced, resized or modified in place): bytes read before it may be another's."""
        self._check()

    def _after_read(self, offset: int, wanted: int, got: int, verify: bool = True) -> None:
        self._counters.add(requests=1, bytes=got)
        if verify or got != wanted:
            self._check()  # first: a short read of a file changed under us says so
        if got != wanted:
            raise InputError(
                self.path, f"truncated: wanted {wanted} bytes at offset {offset}, file gave {got}"
            )

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

