"""Whether a process is still running: a zombie (exited, not yet reaped) counts as gone."""

from __future__ import annotations

from pathlib import Path


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
