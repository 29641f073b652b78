"""The GPU monitor: the device CUDA means, sampled until stopped; nothing without CUDA."""

from __future__ import annotations

import sys
import threading
from types import SimpleNamespace

import torch

from ocog_lib.host import NvmlMonitor


class _NVMLError(Exception):
    pass


class _FakeNvml:
    """pynvml's calls the monitor makes, on one device named by its UUID."""

    NVMLError = _NVMLError

    def __init__(self, uuid: str):
        self.uuid, self.calls, self.sampled = uuid, [], threading.Event()

    def nvmlInit(self):
        self.calls.append("init")

    def nvmlShutdown(self):
        self.calls.append("shutdown")

    def nvmlDeviceGetHandleByUUID(self, uuid):
        if uuid != f"GPU-{self.uuid}":
            raise _NVMLError(uuid)
        return "handle"

    def nvmlDeviceGetHandleByIndex(self, index):
        raise AssertionError("the UUID names the device; the index may not (CUDA_VISIBLE_DEVICES)")

    def nvmlDeviceGetUtilizationRates(self, handle):
        assert handle == "handle"
        self.sampled.set()
        return SimpleNamespace(gpu=87)


def test_without_cuda_there_is_no_monitor(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert NvmlMonitor.start_if_available() is None


def test_samples_the_current_cuda_device_until_stopped(monkeypatch):
    nvml = _FakeNvml("1234-abcd")
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda index: SimpleNamespace(uuid="1234-abcd"))  # fmt: skip
    monitor = NvmlMonitor.start_if_available(interval=0.01)
    assert monitor is not None
    assert nvml.sampled.wait(10)
    samples = monitor.stop()
    assert samples and set(samples) == {87}
    assert nvml.calls == ["init", "shutdown"]
