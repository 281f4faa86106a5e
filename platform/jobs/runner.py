"""Runs one claimed job in its own process: `python -m segloop.platform.jobs.runner JOB_ID`.

The worker starts this process with stdout/stderr going to the job's log file; the handler's
result or error is written to the job row here, so a crash of the handler never takes the worker down.
"""
from __future__ import annotations

import os
import sys
import threading
import time
import traceback

from sqlalchemy.exc import DatabaseError

from segloop.platform.core.errors import NotFoundError, user_message
from segloop.platform.core.storage import interrupt_on_sigterm, terminated
from segloop.platform.db.engine import get_engine, session_scope
from segloop.platform.db.stores import jobs as job_store
from segloop.platform.jobs.registry import get_kind, parse_params

PROGRESS_MIN_INTERVAL = 0.5
ORPHAN_CHECK_SECONDS = 0.5


class RunnerContext:
    """JobContext backed by the DB: throttled progress updates and log lines on stdout."""

    def __init__(self, claim: job_store.Claim):
        self.claim = claim
        self.job_id = claim.job_id
        self._engine = get_engine()
        self._last = 0.0

    def progress(self, fraction: float, message: str = "") -> None:
        """Store progress at most every PROGRESS_MIN_INTERVAL seconds (and always at 100%); progress is best effort,
        so a database that is briefly unreachable does not fail the job."""
        now = time.monotonic()
        if fraction < 1.0 and now - self._last < PROGRESS_MIN_INTERVAL:
            return
        self._last = now
        try:
            with session_scope(self._engine) as session:
                job_store.report_progress(session, self.claim, fraction, message)
        except DatabaseError as exc:
            print(f"progress not recorded ({user_message(exc)})", flush=True)

    def log(self, message: str) -> None:
        """Append a line to the job log."""
        print(message, flush=True)


def exit_when_orphaned(worker_pid: int) -> None:
    """End this job process if its worker dies, so a lost worker's job really goes stale."""

    def watch() -> None:
        while True:
            if os.getppid() != worker_pid:
                print(f"worker {worker_pid} is gone; stopping this job process", flush=True)
                os._exit(70)
            time.sleep(ORPHAN_CHECK_SECONDS)

    threading.Thread(target=watch, daemon=True, name="orphan-watch").start()


def failure_message(kind: str, exc: BaseException) -> str:
    """The one line a person reads about a failed job: the message of an expected failure, else
    '<kind> job failed: <first line of the message>' (no class name, no traceback)."""
    expected = user_message(exc)
    if expected is not None:
        return expected
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{kind} job failed: {text}" if text else f"{kind} job failed unexpectedly; its log has the details"


def run_job(job_id: int, worker_id: str | None = None, attempt: int | None = None) -> int:
    """Run the handler of a claimed job and record success or failure; returns an exit code. The claim (worker id
    and attempt; the job row's own when not given) fences every write to the row."""
    engine = get_engine()
    with session_scope(engine) as session:
        job = job_store.get_job(session, job_id)
    claim = job_store.Claim(job_id, worker_id or job.worker_id or "", attempt or job.attempts)
    print(f"job {job.id} ({job.kind}) attempt {claim.attempt}: params {job.params}", flush=True)
    try:
        kind = get_kind(job.kind)
        params = parse_params(job.kind, job.params)
        result = kind.handler(params, RunnerContext(claim))
    except Exception as exc:  # every failure is recorded on the job row; bad input is not retryable
        with session_scope(engine) as session:
            if terminated() or job_store.cancel_requested(session, job_id):  # a stop can surface as any error
                print(f"job {job_id}: stopped by its worker ({failure_message(job.kind, exc)})", flush=True)
                return 1
            traceback.print_exc()  # the traceback goes to the job's log; the row gets one line for a person
            job_store.fail_job(session, claim, failure_message(job.kind, exc),
                               retryable=not isinstance(exc, ValueError | NotFoundError))
        return 1
    with session_scope(engine) as session:
        recorded = job_store.finish_job(session, claim, result or {})
    print(f"job {job_id} succeeded: {result}" if recorded else
          f"job {job_id} finished, but the job is no longer this run's (its worker was taken for lost); result "
          "not recorded", flush=True)
    return 0


def main(argv: list[str]) -> int:
    """`runner JOB_ID [WORKER_ID ATTEMPT]`: run the job; a stop signal ends it quietly (the worker settles it)."""
    interrupt_on_sigterm()  # a cancelled job's staging folders are removed as on Ctrl-C
    if os.environ.get("SEGLOOP_WORKER_PID"):
        exit_when_orphaned(int(os.environ["SEGLOOP_WORKER_PID"]))
    job_id = int(argv[0])
    worker_id, attempt = (argv[1], int(argv[2])) if len(argv) >= 3 else (None, None)
    try:
        return run_job(job_id, worker_id, attempt)
    except KeyboardInterrupt:
        print(f"job {job_id}: stopped by its worker", flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
