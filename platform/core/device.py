"""Which torch device to run on: 'auto' picks the GPU when one is present, a named device must exist."""
from __future__ import annotations

import os
import sys


class DeviceError(ValueError):
    """A device that is unknown or not present on this machine; the message names it."""


def cuda_available(skip_without_driver: bool = False) -> bool:
    """Whether torch sees a CUDA GPU; with `skip_without_driver`, False without importing torch when Linux
    has no NVIDIA driver node (fast for code that may never need torch)."""
    if skip_without_driver and sys.platform.startswith("linux") and not os.path.exists("/dev/nvidiactl"):
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_device(device: str = "auto") -> str:
    """'cuda' for 'auto' when a GPU is present, else 'cpu'; 'cpu', 'cuda' and 'cuda:<index>' are checked."""
    name = str(device).strip().lower()
    if name == "auto":
        return "cuda" if cuda_available() else "cpu"
    if name == "cpu":
        return name
    if name != "cuda" and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise DeviceError(f"device {device!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:<index>'")
    if not cuda_available():
        raise DeviceError(f"device {device!r}: no CUDA GPU is available on this machine (use 'cpu' or 'auto')")
    import torch

    if ":" in name and int(name[5:]) >= torch.cuda.device_count():
        raise DeviceError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return name
