"""Host facts stored beside every measurement, so a number can be traced to its machine,
and the GPU monitor sampled while a loader or a training run works."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import threading
from importlib import metadata
from pathlib import Path
from typing import Any

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


class NvmlMonitor:
    """Samples NVML GPU utilization of the current CUDA device every `interval` seconds,
    so a loader's figures can be put beside how busy the GPU was (`stop` returns them)."""

    def __init__(self, pynvml: Any, handle: Any, interval: float):
        self._nvml = pynvml
        self._handle = handle
        self._interval = interval
        self._samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nvml-util", daemon=True)
        self._thread.start()

    @classmethod
    def start_if_available(cls, interval: float = 0.1) -> NvmlMonitor | None:
        """A running monitor, or None without CUDA, pynvml or a device NVML can name."""
        import torch  # here: host facts are read by what never needs torch

        if not torch.cuda.is_available():
            return None
        try:
            import pynvml
        except ImportError:
            return None
        index = torch.cuda.current_device()
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError:
            return None
        try:
            # NVML indexes ignore CUDA_VISIBLE_DEVICES; the UUID names the same device
            uuid = torch.cuda.get_device_properties(index).uuid
            handle = pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
        except (AttributeError, pynvml.NVMLError):
            try:
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            except pynvml.NVMLError:
                pynvml.nvmlShutdown()
                return None
        return cls(pynvml, handle, interval)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._samples.append(
                    int(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)
                )
            except self._nvml.NVMLError:
                pass
            self._stop.wait(self._interval)

    def stop(self) -> tuple[int, ...]:
        self._stop.set()
        self._thread.join()
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError:
            pass
        return tuple(self._samples)
