"""Shared benchmark plumbing: where JSON goes, machine description, timing."""
from __future__ import annotations

import os
import platform as std_platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from segloop.platform.core.settings import load_settings

MAX_THREADS = 256  # a --threads bound: far more threads than cores only measures the scheduler (100000 crashed)


def default_json_path(name: str) -> Path:
    """`$SEGLOOP_DATA_DIR/bench/<name>.json`."""
    return load_settings().data_dir / "bench" / f"{name}.json"


def machine_info() -> dict[str, Any]:
    """CPU count, Python and library versions, GPU presence: the context every figure needs."""
    info: dict[str, Any] = {"cpus": os.cpu_count(), "python": std_platform.python_version(),
                            "machine": std_platform.machine()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["torch"] = None
    return info


def bench_devices(devices: str) -> list[str]:
    """The devices a benchmark measures: 'auto' is the CPU and, when present, the GPU; else the one named (checked)."""
    from segloop.platform.core.device import cuda_available, resolve_device

    if devices == "auto":
        return ["cpu", "cuda"] if cuda_available() else ["cpu"]
    return [resolve_device(devices)]


def best_of(repeats: int, func: Callable[[], Any]) -> tuple[float, Any]:
    """The fastest wall time of `repeats` runs of `func`, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - started)
    return best, result


def comma_items(option: str, text: str) -> list[str]:
    """The non-empty comma-separated items of an option's value (BadParameter naming the option when none)."""
    import click

    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise click.BadParameter(f"{text!r}: give at least one comma-separated value", param_hint=option)
    return items


def comma_ints(option: str, text: str, minimum: int = 1, maximum: int | None = None) -> list[int]:
    """An option's comma-separated integers, each in `minimum`..`maximum` (BadParameter naming the option otherwise)."""
    import click

    try:
        values = [int(item.replace("_", "")) for item in comma_items(option, text)]
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected comma-separated integers", param_hint=option) from None
    if min(values) < minimum:
        raise click.BadParameter(f"{text!r}: values must be at least {minimum}", param_hint=option)
    if maximum is not None and max(values) > maximum:
        raise click.BadParameter(f"{text!r}: values must be at most {maximum}", param_hint=option)
    return values
