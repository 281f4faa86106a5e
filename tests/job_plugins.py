"""Job kinds used only by the job-system tests (loaded through SEGLOOP_JOB_PLUGINS)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

from segloop.platform.core.errors import NotFoundError
from segloop.platform.jobs.registry import job_kind


@dataclass
class SleepParams:
    """Sleep for `seconds`, reporting progress `steps` times."""

    seconds: float = 1.0
    steps: int = 4
    marker: str | None = None
    resume: bool = True  # a run after the first (the marker exists) finishes at once
    fail_on_stop: bool = False  # a stop signal surfaces as an error (as a killed DataLoader worker's does)


@job_kind("test-sleep", SleepParams, "Sleep and report progress (tests only).")
def sleep_job(params: SleepParams, ctx) -> dict:
    """Sleep in steps; `marker` counts runs and acts as a checkpoint: a resumed run finishes at once."""
    seconds = params.seconds
    if params.marker:
        resumed = os.path.exists(params.marker)
        with open(params.marker, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        if resumed and params.resume:
            seconds = 0.05 * params.steps
    try:
        for step in range(params.steps):
            time.sleep(seconds / params.steps)
            ctx.progress((step + 1) / params.steps, f"step {step + 1}")
            ctx.log(f"step {step + 1}")
    except KeyboardInterrupt:
        if params.fail_on_stop:
            raise RuntimeError("DataLoader worker (pid 1) is killed by signal: Terminated.") from None
        raise
    return {"slept": params.seconds, "pid": os.getpid()}


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
    missing: bool = False  # raise what a row deleted after submission raises instead


@job_kind("test-fail", FailParams, "Raise an unexpected error (tests only).")
def fail_job(params: FailParams, ctx) -> dict:
    """Fail the way a bug does: an exception that is not a ValueError."""
    if params.missing:
        raise NotFoundError(params.message)
    raise RuntimeError(params.message)
