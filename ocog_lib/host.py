"""Host facts stored beside every measurement, so a number can be traced to its machine."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
_PACKAGES = ("numpy", "torch", "rasterio", "imagecodecs", "duckdb", "dagster", "tifffile")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def total_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, which containers narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def package_version(name: str) -> str | None:
    """Installed version without importing the package (torch takes seconds to import)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def gdal_version() -> str | None:
    try:
        import rasterio
    except ImportError:
        return None
    return rasterio.__gdal_version__


def git_sha(repo: Path = _REPO) -> str | None:
    """HEAD of the ocog checkout, '+dirty' when tracked files differ; None outside git."""
    try:
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}+dirty" if dirty else sha or None


def host_facts() -> dict:
    facts: dict = {
        "hostname": socket.gethostname(),
        "cores": usable_cores(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_total_bytes": total_memory_bytes(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "gdal": gdal_version(),
        "git_sha": git_sha(),
    }
    facts.update({name: package_version(name) for name in _PACKAGES})
    return facts
