"""Job kinds used only by the job-system tests (loaded through SEGLOOP_JOB_PLUGINS)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

from segloop.platform.jobs.registry import job_kind


@dataclass
class SleepParams:
    """Sleep for `seconds`, reporting progress `steps` times."""

    seconds: float = 1.0
    steps: int = 4
    marker: str | None = None


@job_kind("test-sleep", SleepParams, "Sleep and report progress (tests only).")
def sleep_job(params: SleepParams, ctx) -> dict:
    """Sleep in steps; `marker` counts runs and acts as a checkpoint: a resumed run finishes at once."""
    seconds = params.seconds
    if params.marker:
        resumed = os.path.exists(params.marker)
        with open(params.marker, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        if resumed:
            seconds = 0.05 * params.steps
    for step in range(params.steps):
        time.sleep(seconds / params.steps)
        ctx.progress((step + 1) / params.steps, f"step {step + 1}")
        ctx.log(f"step {step + 1}")
    return {"slept": params.seconds}


@dataclass
class CrashParams:
    """Exit the job process abruptly with `code`."""

    code: int = 3


@job_kind("test-crash", CrashParams, "Exit the job process without a result (tests only).")
def crash_job(params: CrashParams, ctx) -> dict:
    """Die without writing a result."""
    os._exit(params.code)


@dataclass
class FailParams:
    """Raise an unexpected error with `message`."""

    message: str = "the disk is full\nsecond line"


@job_kind("test-fail", FailParams, "Raise an unexpected error (tests only).")
def fail_job(params: FailParams, ctx) -> dict:
    """Fail the way a bug does: an exception that is not a ValueError."""
    raise RuntimeError(params.message)
