"""A worker: claims jobs from the DB queue, runs each in a subprocess, heartbeats, honours cancel."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import DatabaseError

from segloop.platform.core.errors import ValidationError, user_message
from segloop.platform.core.settings import Settings, load_settings
from segloop.platform.db.engine import get_engine, session_scope, sqlite_file
from segloop.platform.db.stores import jobs as job_store
from segloop.platform.jobs import registry

TERMINATE_GRACE_SECONDS = 10.0
POLL_SECONDS_RANGE = (0.01, 86400.0)  # shorter polls spin the CPU; longer ones exceed what a timer can wait


@dataclass
class WorkerOptions:
    """How a worker behaves."""

    poll_seconds: float = 1.0
    kinds: list[str] | None = None
    max_jobs: int | None = None
    exit_when_idle: bool = False

    def __post_init__(self) -> None:
        """Refuse options under which a worker would spin, never stop, or wait for jobs no one can submit."""
        if not POLL_SECONDS_RANGE[0] <= self.poll_seconds <= POLL_SECONDS_RANGE[1]:  # NaN fails too
            raise ValidationError(f"poll: must be between {POLL_SECONDS_RANGE[0]:g} and {POLL_SECONDS_RANGE[1]:g} "
                                  f"seconds, got {self.poll_seconds:g}")
        if self.max_jobs is not None and self.max_jobs < 1:
            raise ValidationError(f"max-jobs: must be at least 1, got {self.max_jobs}")
        for kind in self.kinds or []:
            registry.get_kind(kind)  # ValidationError naming the kind and listing the known ones


def default_worker_id() -> str:
    """host:pid:random, unique per worker process."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class WorkerError(ValueError):
    """The worker cannot go on (its job logs cannot be written): an expected failure whose message says why. The
    job it held is back in the queue."""


class Worker:
    """Claims and runs jobs one at a time until stopped."""

    def __init__(self, settings: Settings | None = None, options: WorkerOptions | None = None,
                 worker_id: str | None = None):
        self.settings = settings or load_settings()
        self.options = options or WorkerOptions()
        self.worker_id = worker_id or default_worker_id()
        self.engine = get_engine(self.settings)
        self._database_file = sqlite_file(self.settings.db_url)  # None for a database server
        self._stopping = False
        self._wake = threading.Event()
        self._current: int | None = None

    def stop(self, *_args) -> None:
        """First SIGTERM: finish the current job, then exit (at once when idle). Second: stop the job now (it is
        re-queued)."""
        if self._stopping and self._current is not None:
            raise KeyboardInterrupt
        self._stopping = True
        self._wake.set()
        if self._current is not None:
            print(f"[worker {self.worker_id}] stopping after job {self._current} ends; signal again to stop it "
                  "now (it is re-queued)", flush=True)

    def run(self) -> int:
        """Loop: reap stale jobs, claim, run; returns how many jobs ran."""
        from segloop.platform.media.ingest import clean_stale_staging

        clean_stale_staging(self.settings)  # left by a job process killed with its previous worker
        kinds = self.options.kinds or list(registry.kinds())  # never claim a kind this worker cannot run
        ran = 0
        while not self._stopping:
            if self.options.max_jobs is not None and ran >= self.options.max_jobs:
                break
            if self.run_once(kinds):
                ran += 1
            elif self.options.exit_when_idle:
                break
            else:
                self._wake.wait(self.options.poll_seconds)
        return ran

    def run_once(self, kinds: list[str] | None = None) -> bool:
        """Claim and run one job; False when the queue had nothing for this worker."""
        if self._database_file is not None and not Path(self._database_file).exists():  # open handles: a ghost
            raise WorkerError(f"the database {self._database_file} is gone (deleted or moved); the worker stops")
        with session_scope(self.engine) as session:
            for job_id in job_store.reap_stale_jobs(session, self.settings.stale_after_seconds):
                print(f"[worker {self.worker_id}] job {job_id}: its worker was lost; settled", flush=True)
        with session_scope(self.engine) as session:
            job = job_store.claim_next_job(session, self.worker_id, kinds or self.options.kinds)
        if job is None:
            return False
        self._current = job.id
        try:
            self._execute(job_store.Claim.of(job), job.kind)
        finally:
            self._current = None
        return True

    def _execute(self, claim: job_store.Claim, kind: str) -> None:
        """Run the job's process, heartbeat while it lives, and settle its final state."""
        log_path = self.settings.logs_dir / f"job-{claim.job_id}.log"
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log = open(log_path, "w" if claim.attempt == 1 else "a", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            self._release(claim, f"its worker could not write the job log ({user_message(exc)})")
            raise WorkerError(f"cannot write job logs in {log_path.parent}: {user_message(exc)}; job {claim.job_id} "
                              "is back in the queue") from None
        with session_scope(self.engine) as session:
            job_store.set_log_path(session, claim.job_id, str(log_path))
        print(f"[worker {self.worker_id}] job {claim.job_id} ({kind}) started, log {log_path}", flush=True)
        with log:
            process = subprocess.Popen(
                [sys.executable, "-m", "segloop.platform.jobs.runner", str(claim.job_id), claim.worker_id,
                 str(claim.attempt)],
                stdout=log, stderr=subprocess.STDOUT, env=self._child_env(), start_new_session=True,
            )
            try:
                outcome = self._supervise(claim, process)
            except BaseException:  # Ctrl-C or a second SIGTERM: stop the job and give it back before exiting
                _terminate(process)
                self._release(claim, "its worker was stopped")
                raise
        self._settle(claim, outcome, process.returncode)

    def _settle(self, claim: job_store.Claim, outcome: str, returncode: int) -> None:
        """Record how the run ended: cancelled, lost to another worker, or failed without a result."""
        with session_scope(self.engine) as session:
            if outcome == job_store.CANCEL:
                job_store.settle_cancelled(session, claim)
            elif outcome == job_store.RUNNING:
                job_store.fail_job(
                    session, claim,
                    f"the job process exited with code {returncode} without a result; its log has the details",
                    retryable=True,
                )
            final = job_store.get_job(session, claim.job_id)
        if returncode != 0:
            from segloop.platform.media.ingest import clean_stale_staging

            clean_stale_staging(self.settings)  # what the killed or failed job process was staging
        if outcome == job_store.LOST or (final.worker_id, final.attempts) != (claim.worker_id, claim.attempt):
            print(f"[worker {self.worker_id}] job {claim.job_id}: this run was stopped, the job is no longer its "
                  f"own (its heartbeat lapsed; now {final.status})", flush=True)
        else:
            print(f"[worker {self.worker_id}] job {claim.job_id} {final.status}", flush=True)

    def _supervise(self, claim: job_store.Claim, process: subprocess.Popen) -> str:
        """Heartbeat until the process exits; stop it on cancel or when the job is no longer this run's. Returns
        RUNNING (it exited), CANCEL or LOST."""
        unreachable = False
        while True:
            try:
                process.wait(timeout=self.settings.heartbeat_seconds)
                return job_store.RUNNING
            except subprocess.TimeoutExpired:
                pass
            try:
                with session_scope(self.engine) as session:
                    state = job_store.heartbeat(session, claim)
            except DatabaseError as exc:  # a short outage: keep the job; if it lasts, the job is reaped elsewhere
                if not unreachable:
                    print(f"[worker {self.worker_id}] job {claim.job_id}: heartbeat not recorded "
                          f"({user_message(exc)}); retrying", flush=True)
                unreachable = True
                continue
            if unreachable:
                print(f"[worker {self.worker_id}] job {claim.job_id}: heartbeat recorded again", flush=True)
                unreachable = False
            if state != job_store.RUNNING:
                _terminate(process)
                return state

    def _child_env(self) -> dict[str, str]:
        """The job process's environment: this worker's data dir and database."""
        env = dict(os.environ)
        env["SEGLOOP_DATA_DIR"] = str(self.settings.data_dir.resolve())
        if self.settings.database_url:
            env["SEGLOOP_DATABASE_URL"] = self.settings.database_url
        env.setdefault("PYTHONUNBUFFERED", "1")
        env["SEGLOOP_WORKER_PID"] = str(os.getpid())
        return env

    def _release(self, claim: job_store.Claim, reason: str) -> None:
        """Give the run's job back to the queue (or settle it; see `release_job`) and say so."""
        with session_scope(self.engine) as session:
            status = job_store.release_job(session, claim, reason)
        if status is not None:
            print(f"[worker {self.worker_id}] job {claim.job_id}: {reason}; now {status}", flush=True)

def _terminate(process: subprocess.Popen) -> None:
    """SIGTERM the job's process group, then SIGKILL after a grace period."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=TERMINATE_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        process.wait()


def run_worker(options: WorkerOptions, settings: Settings | None = None) -> int:
    """Run a worker in the foreground until SIGTERM (drain) or SIGINT (stop now); returns how many jobs it ran."""
    worker = Worker(settings, options)
    signal.signal(signal.SIGTERM, worker.stop)
    print(f"[worker {worker.worker_id}] polling {Path(str(worker.engine.url)).name}", flush=True)
    return worker.run()
