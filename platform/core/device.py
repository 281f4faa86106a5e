"""Which torch device to run on: 'auto' picks the GPU when one is present, a named device must exist."""
from __future__ import annotations

import os
import sys


class DeviceError(ValueError):
    """A device that is unknown or not present on this machine; the message names it."""


class MemoryBudgetError(ValueError):
    """Work refused because its arrays would not fit in memory; the message names the options that size it."""


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


def available_memory_bytes() -> int | None:
    """Memory the system can still give a process (Linux MemAvailable), or None where it cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def require_memory(needed_bytes: int, what: str) -> None:
    """Refuse, before any work, a job whose arrays cannot fit in the memory available now."""
    available = available_memory_bytes()
    if available is not None and needed_bytes > available:
        raise MemoryBudgetError(f"{what} needs about {needed_bytes / 2**30:.1f} GiB of memory; "
                                f"{available / 2**30:.1f} GiB is available on this machine")
