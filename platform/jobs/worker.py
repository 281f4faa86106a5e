"""A worker: claims jobs from the DB queue, runs each in a subprocess, heartbeats, honours cancel."""
from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from segloop.platform.core.settings import Settings, load_settings
from segloop.platform.db.engine import get_engine, session_scope
from segloop.platform.db.entities import JobInfo
from segloop.platform.db.stores import jobs as job_store

TERMINATE_GRACE_SECONDS = 10.0


@dataclass
class WorkerOptions:
    """How a worker behaves."""

    poll_seconds: float = 1.0
    kinds: list[str] | None = None
    max_jobs: int | None = None
    exit_when_idle: bool = False

    def __post_init__(self) -> None:
        """Refuse options under which a worker would spin, never stop, or wait for jobs no one can submit."""
        from segloop.platform.core.errors import ValidationError
        from segloop.platform.jobs.registry import get_kind

        if not 0 < self.poll_seconds < math.inf:
            raise ValidationError(f"poll: must be > 0 seconds and finite, got {self.poll_seconds}")
        if self.max_jobs is not None and self.max_jobs < 1:
            raise ValidationError(f"max-jobs: must be at least 1, got {self.max_jobs}")
        for kind in self.kinds or []:
            get_kind(kind)  # ValidationError naming the kind and listing the known ones


def default_worker_id() -> str:
    """host:pid:random, unique per worker process."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    """Claims and runs jobs one at a time until stopped."""

    def __init__(self, settings: Settings | None = None, options: WorkerOptions | None = None,
                 worker_id: str | None = None):
        self.settings = settings or load_settings()
        self.options = options or WorkerOptions()
        self.worker_id = worker_id or default_worker_id()
        self.engine = get_engine(self.settings)
        self._stopping = False

    def stop(self, *_args) -> None:
        """Finish the current job, then exit."""
        self._stopping = True

    def run(self) -> int:
        """Loop: reap stale jobs, claim, run; returns how many jobs ran."""
        from segloop.platform.media.ingest import clean_stale_staging

        clean_stale_staging(self.settings)  # left by a job process killed with its previous worker
        ran = 0
        while not self._stopping:
            if self.options.max_jobs is not None and ran >= self.options.max_jobs:
                break
            if self.run_once():
                ran += 1
            elif self.options.exit_when_idle:
                break
            else:
                time.sleep(self.options.poll_seconds)
        return ran

    def run_once(self) -> bool:
        """Claim and run one job; False when the queue had nothing for this worker."""
        with session_scope(self.engine) as session:
            for job_id in job_store.reap_stale_jobs(session, self.settings.stale_after_seconds):
                print(f"[worker {self.worker_id}] job {job_id}: its worker was lost; re-queued or failed", flush=True)
        with session_scope(self.engine) as session:
            job = job_store.claim_next_job(session, self.worker_id, self.options.kinds)
        if job is None:
            return False
        self._execute(job)
        return True

    def _execute(self, job: JobInfo) -> None:
        """Run the job's process, heartbeat while it lives, and settle its final state."""
        log_path = self.settings.logs_dir / f"job-{job.id}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with session_scope(self.engine) as session:
            job_store.set_log_path(session, job.id, str(log_path))
        print(f"[worker {self.worker_id}] job {job.id} ({job.kind}) started, log {log_path}", flush=True)
        with open(log_path, "a", encoding="utf-8") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "segloop.platform.jobs.runner", str(job.id)],
                stdout=log, stderr=subprocess.STDOUT, env=self._child_env(), start_new_session=True,
            )
            cancelled = self._supervise(job.id, process)
        returncode = process.returncode
        with session_scope(self.engine) as session:
            if cancelled:
                job_store.mark_cancelled(session, job.id)
            elif job_store.get_job(session, job.id).status == job_store.RUNNING:
                job_store.fail_job(
                    session, job.id,
                    f"the job process exited with code {returncode} without a result; its log has the details",
                    retryable=True,
                )
            final = job_store.get_job(session, job.id)
        if returncode != 0:
            from segloop.platform.media.ingest import clean_stale_staging

            clean_stale_staging(self.settings)  # what the killed or failed job process was staging
        print(f"[worker {self.worker_id}] job {job.id} {final.status}", flush=True)

    def _supervise(self, job_id: int, process: subprocess.Popen) -> bool:
        """Heartbeat until the process exits; terminate it on cancel. Returns whether it was cancelled."""
        while True:
            try:
                process.wait(timeout=self.settings.heartbeat_seconds)
                return False
            except subprocess.TimeoutExpired:
                pass
            with session_scope(self.engine) as session:
                cancel = job_store.heartbeat(session, job_id)
            if cancel:
                _terminate(process)
                return True

    def _child_env(self) -> dict[str, str]:
        """The job process's environment: this worker's data dir and database."""
        env = dict(os.environ)
        env["SEGLOOP_DATA_DIR"] = str(self.settings.data_dir.resolve())
        if self.settings.database_url:
            env["SEGLOOP_DATABASE_URL"] = self.settings.database_url
        env.setdefault("PYTHONUNBUFFERED", "1")
        env["SEGLOOP_WORKER_PID"] = str(os.getpid())
        return env


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
    """Run a worker in the foreground until SIGINT/SIGTERM; returns how many jobs it ran."""
    worker = Worker(settings, options)
    signal.signal(signal.SIGTERM, worker.stop)
    print(f"[worker {worker.worker_id}] polling {Path(str(worker.engine.url)).name}", flush=True)
    return worker.run()
