"""Which torch device a run uses, and mixed precision where it pays (CUDA only)."""

from __future__ import annotations

import torch

from ocog_lib.errors import InputError


def pick_device(name: str = "auto") -> torch.device:
    """"auto": CUDA when present, else the CPU; a named device must exist here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise InputError(f"device {name!r}", str(exc)) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r}", "CUDA is not available on this machine")
    return dev


def autocast(device: torch.device, amp: bool):
    """bfloat16 (else float16) autocast on CUDA when `amp`; a no-op context elsewhere."""
    if amp and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast(device.type, enabled=False)
