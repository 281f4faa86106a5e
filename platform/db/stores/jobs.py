"""The DB-backed job queue: submit, claim atomically, heartbeat, progress, finish, cancel, retry."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from segloop.platform.core.errors import ValidationError
from segloop.platform.db.entities import JobInfo, from_row
from segloop.platform.db.orm import Job, utcnow
from segloop.platform.db.stores import MAX_ID, get_row

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
CANCEL, LOST = "cancel", "lost"  # what a heartbeat can answer besides RUNNING
DEFAULT_ATTEMPTS = 3  # runs a job may lose to dead workers before it fails (again after each manual retry)
FINISHED = (SUCCEEDED, FAILED, CANCELLED)
STATUSES = (QUEUED, RUNNING, *FINISHED)


def submit_job(
    session: Session, kind: str, params: dict[str, Any], project_id: int | None = None,
    max_attempts: int = DEFAULT_ATTEMPTS
) -> JobInfo:
    """Queue a job (params must already be checked: `services.jobs.submit_job` does that)."""
    row = Job(kind=kind, params=params, project_id=project_id, max_attempts=max_attempts, status=QUEUED)
    session.add(row)
    session.flush()
    return from_row(JobInfo, row)


def claim_next_job(session: Session, worker_id: str, kinds: list[str] | None = None) -> JobInfo | None:
    """Atomically take the oldest queued job for this worker (SKIP LOCKED on PostgreSQL).

    The conditional UPDATE (status still 'queued') makes the claim a compare-and-swap, so two
    workers never run the same job on either database.
    """
    candidates = select(Job.id).where(Job.status == QUEUED, Job.cancel_requested.is_not(True)).order_by(Job.id).limit(8)
    if kinds:
        candidates = candidates.where(Job.kind.in_(kinds))
    candidates = candidates.with_for_update(skip_locked=True)
    now = utcnow()
    for job_id in session.scalars(candidates).all():
        claimed = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == QUEUED)
            .values(
                status=RUNNING,
                worker_id=worker_id,
                attempts=Job.attempts + 1,
                started_at=now,
                heartbeat_at=now,
                progress=0.0,
                error=None,
                message="started",
            )
        ).rowcount
        if claimed == 1:
            return get_job(session, job_id)
    return None


@dataclass(frozen=True)
class Claim:
    """One run of a job: the job, the worker that claimed it and the attempt. A run writes to its job only while
    the claim is still the job's own, so a worker that was taken for dead never overwrites the run that replaced it."""

    job_id: int
    worker_id: str
    attempt: int

    @classmethod
    def of(cls, job: JobInfo) -> Claim:
        """The claim a just-claimed job row records."""
        return cls(job.id, job.worker_id or "", job.attempts)


def _owned(claim: Claim) -> tuple:
    """SQL conditions: the job is running under this claim."""
    return (Job.id == claim.job_id, Job.status == RUNNING, Job.worker_id == claim.worker_id,
            Job.attempts == claim.attempt)


def heartbeat(session: Session, claim: Claim) -> str:
    """Record that the run is alive: RUNNING (also once the run itself settled the job: its process is exiting),
    CANCEL (cancellation was requested) or LOST (the job is no longer this run's: reaped, re-queued, claimed by
    another worker)."""
    if session.execute(update(Job).where(*_owned(claim)).values(heartbeat_at=utcnow())).rowcount == 0:
        owner = session.execute(select(Job.worker_id, Job.attempts).where(Job.id == claim.job_id)).first()
        return RUNNING if owner is not None and tuple(owner) == (claim.worker_id, claim.attempt) else LOST
    return CANCEL if cancel_requested(session, claim.job_id) else RUNNING


def report_progress(session: Session, claim: Claim, progress: float, message: str = "") -> None:
    """Store a running job's progress (clamped to 0..1) and message."""
    session.execute(
        update(Job)
        .where(*_owned(claim))
        .values(progress=min(max(float(progress), 0.0), 1.0), message=message[:2000], heartbeat_at=utcnow())
    )


def set_log_path(session: Session, job_id: int, log_path: str) -> None:
    """Remember where a job's log file is."""
    session.execute(update(Job).where(Job.id == job_id).values(log_path=log_path))


def finish_job(session: Session, claim: Claim, result: dict[str, Any] | None = None, message: str = "done") -> bool:
    """Mark the run's job succeeded with its result; False when the job is no longer this run's."""
    return session.execute(
        update(Job)
        .where(*_owned(claim))
        .values(status=SUCCEEDED, progress=1.0, result=result or {}, message=message, finished_at=utcnow())
    ).rowcount == 1


def fail_job(session: Session, claim: Claim, error: str, retryable: bool) -> bool:
    """Mark the run's job failed with a one-line error (its first line), saying whether a retry may help; False when
    the job is no longer this run's."""
    error = next((line.strip() for line in error.splitlines() if line.strip()), "failed")
    return session.execute(
        update(Job)
        .where(*_owned(claim))
        .values(status=FAILED, error=error[:10000], retryable=retryable, message="failed", finished_at=utcnow())
    ).rowcount == 1


def cancel_requested(session: Session, job_id: int) -> bool:
    """Whether someone asked for the job to be cancelled."""
    return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def settle_cancelled(session: Session, claim: Claim) -> None:
    """Mark the run's job cancelled once its process was stopped on request (even if the stopped process recorded
    a failure on its way out)."""
    session.execute(
        update(Job)
        .where(Job.id == claim.job_id, Job.worker_id == claim.worker_id, Job.attempts == claim.attempt,
               Job.status.in_((RUNNING, FAILED)), Job.cancel_requested.is_(True))
        .values(status=CANCELLED, message="cancelled", error=None, retryable=False, finished_at=utcnow())
    )


def release_job(session: Session, claim: Claim, reason: str) -> str | None:
    """Give back a run's job whose worker stops before it ends: cancelled if that was asked for, else re-queued
    while attempts remain, else failed (retryable); its new status, or None when the job was no longer the run's."""
    row = session.execute(select(Job.attempts, Job.max_attempts, Job.cancel_requested).where(*_owned(claim))
                          .with_for_update()).first()
    if row is None:
        return None
    return _settle_lost(session, claim.job_id, *row, reason, _owned(claim))


def _settle_lost(session: Session, job_id: int, attempts: int, max_attempts: int, cancel: bool, reason: str,
                 conditions: tuple) -> str:
    """Settle a running job whose run ended without a result (see `release_job`); its new status."""
    status = CANCELLED if cancel else QUEUED if attempts < max_attempts else FAILED
    values: dict[str, Any] = {
        CANCELLED: {"message": f"cancelled ({reason})", "error": None, "finished_at": utcnow()},
        QUEUED: {"message": f"{reason}; re-queued (attempt {attempts} of {max_attempts})", "error": reason,
                 "finished_at": None},
        FAILED: {"message": reason, "error": f"{reason}; gave up after {attempts} attempts, retry to resume",
                 "retryable": True, "finished_at": utcnow()},
    }[status]
    session.execute(update(Job).where(*conditions).values(status=status, worker_id=None, **values))
    return status


def request_cancel(session: Session, job_id: int, stale_after_seconds: float | None = None) -> JobInfo:
    """Cancel a queued job now, or ask the worker of a running job to stop it (a running job whose worker is gone,
    with no heartbeat for `stale_after_seconds`, is cancelled at once). One conditional update per case, so a
    worker claiming the job at the same moment sees the request."""
    job = get_job(session, job_id)
    now = utcnow()
    queued = update(Job).where(Job.id == job_id, Job.status == QUEUED)
    if session.execute(queued.values(status=CANCELLED, cancel_requested=True, message="cancelled",
                                     finished_at=now)).rowcount:
        return get_job(session, job_id)
    running = update(Job).where(Job.id == job_id, Job.status == RUNNING)
    if stale_after_seconds is not None:
        cutoff = now - timedelta(seconds=stale_after_seconds)
        if session.execute(running.where(Job.heartbeat_at < cutoff).values(
                status=CANCELLED, cancel_requested=True, worker_id=None, finished_at=now,
                message="cancelled (its worker was lost)")).rowcount:
            return get_job(session, job_id)
    if not session.execute(running.values(cancel_requested=True)).rowcount:
        raise ValueError(f"job {job_id} is already {get_job(session, job_id).status}; nothing to cancel"
                         if job.status in FINISHED else f"job {job_id} changed state; try again")
    return get_job(session, job_id)


def retry_job(session: Session, job_id: int) -> JobInfo:
    """Put a failed or cancelled job back in the queue, with a fresh allowance of attempts."""
    job = get_job(session, job_id)
    if job.status not in (FAILED, CANCELLED):
        raise ValueError(f"job {job_id} is {job.status}; only failed or cancelled jobs can be retried")
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_((FAILED, CANCELLED)))
        .values(status=QUEUED, error=None, retryable=False, cancel_requested=False, progress=0.0,
                message="queued for retry", worker_id=None, finished_at=None,
                max_attempts=Job.attempts + DEFAULT_ATTEMPTS)
    )
    return get_job(session, job_id)


def reap_stale_jobs(session: Session, stale_after_seconds: float) -> list[int]:
    """Settle running jobs without a recent heartbeat: cancelled when that was requested, else re-queued while
    attempts remain, else failed.

    The error says the worker was lost; a re-queued job resumes from its last checkpoint
    (pretrain, fine-tune) or restarts idempotently (ingest, embed, select) when claimed again.
    Returns the ids of the stale jobs.
    """
    cutoff = utcnow() - timedelta(seconds=stale_after_seconds)
    stale = session.execute(
        select(Job.id, Job.attempts, Job.max_attempts, Job.cancel_requested)
        .where(Job.status == RUNNING, Job.heartbeat_at < cutoff)
        .with_for_update(skip_locked=True)
    ).all()
    reason = f"worker stopped heartbeating (no heartbeat for {stale_after_seconds:.0f} s)"
    for job_id, attempts, max_attempts, cancel in stale:
        _settle_lost(session, job_id, attempts, max_attempts, cancel, reason,
                     (Job.id == job_id, Job.status == RUNNING, Job.heartbeat_at < cutoff))
    return [row[0] for row in stale]


def get_job(session: Session, job_id: int) -> JobInfo:
    """The job with this id, or NotFoundError."""
    return from_row(JobInfo, get_row(session, Job, job_id, "job", populate_existing=True))


def list_jobs(session: Session, status: str | None = None, limit: int = 50, offset: int = 0) -> list[JobInfo]:
    """Newest jobs first, optionally of one status (ValidationError for an unknown status or a limit below 1)."""
    if status and status not in STATUSES:
        raise ValidationError(f"status: {status!r} is not a job status (one of {', '.join(STATUSES)})")
    if limit < 1 or offset < 0:
        raise ValidationError(f"limit {limit} / offset {offset}: the limit must be at least 1, the offset at least 0")
    query = select(Job).order_by(Job.id.desc()).offset(min(offset, MAX_ID)).limit(min(limit, MAX_ID))
    if status:
        query = query.where(Job.status == status)
    return [from_row(JobInfo, r) for r in session.scalars(query)]
