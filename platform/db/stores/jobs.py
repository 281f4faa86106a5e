"""The DB-backed job queue: submit, claim atomically, heartbeat, progress, finish, cancel, retry."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from segloop.platform.core.errors import ValidationError
from segloop.platform.db.entities import JobInfo, from_row
from segloop.platform.db.orm import Job, utcnow
from segloop.platform.db.stores import MAX_ID, get_row

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
FINISHED = (SUCCEEDED, FAILED, CANCELLED)
STATUSES = (QUEUED, RUNNING, *FINISHED)


def submit_job(
    session: Session, kind: str, params: dict[str, Any], project_id: int | None = None, max_attempts: int = 3
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
    candidates = select(Job.id).where(Job.status == QUEUED).order_by(Job.id).limit(8)
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


def heartbeat(session: Session, job_id: int) -> bool:
    """Record that the job's worker is alive; returns whether cancellation was requested."""
    session.execute(update(Job).where(Job.id == job_id, Job.status == RUNNING).values(heartbeat_at=utcnow()))
    return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def report_progress(session: Session, job_id: int, progress: float, message: str = "") -> None:
    """Store a running job's progress (clamped to 0..1) and message."""
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == RUNNING)
        .values(progress=min(max(float(progress), 0.0), 1.0), message=message[:2000], heartbeat_at=utcnow())
    )


def set_log_path(session: Session, job_id: int, log_path: str) -> None:
    """Remember where a job's log file is."""
    session.execute(update(Job).where(Job.id == job_id).values(log_path=log_path))


def finish_job(session: Session, job_id: int, result: dict[str, Any] | None = None, message: str = "done") -> None:
    """Mark a running job succeeded with its result."""
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == RUNNING)
        .values(status=SUCCEEDED, progress=1.0, result=result or {}, message=message, finished_at=utcnow())
    )


def fail_job(session: Session, job_id: int, error: str, retryable: bool) -> None:
    """Mark a running job failed with a one-line error (its first line), saying whether a retry may help."""
    error = next((line.strip() for line in error.splitlines() if line.strip()), "failed")
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == RUNNING)
        .values(status=FAILED, error=error[:10000], retryable=retryable, message="failed", finished_at=utcnow())
    )


def mark_cancelled(session: Session, job_id: int) -> None:
    """Mark a job whose cancellation took effect."""
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_((QUEUED, RUNNING)))
        .values(status=CANCELLED, message="cancelled", finished_at=utcnow())
    )


def request_cancel(session: Session, job_id: int) -> JobInfo:
    """Cancel a queued job now, or ask the worker of a running job to stop it."""
    job = get_job(session, job_id)
    if job.status == QUEUED:
        mark_cancelled(session, job_id)
    elif job.status == RUNNING:
        session.execute(update(Job).where(Job.id == job_id).values(cancel_requested=True))
    else:
        raise ValueError(f"job {job_id} is already {job.status}; nothing to cancel")
    return get_job(session, job_id)


def retry_job(session: Session, job_id: int) -> JobInfo:
    """Put a failed or cancelled job back in the queue."""
    job = get_job(session, job_id)
    if job.status not in (FAILED, CANCELLED):
        raise ValueError(f"job {job_id} is {job.status}; only failed or cancelled jobs can be retried")
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(status=QUEUED, error=None, retryable=False, cancel_requested=False, progress=0.0,
                message="queued for retry", worker_id=None, finished_at=None)
    )
    return get_job(session, job_id)


def reap_stale_jobs(session: Session, stale_after_seconds: float) -> list[int]:
    """Settle running jobs without a recent heartbeat: re-queue them while attempts remain, else fail them.

    Either way the error says the worker was lost; a re-queued job resumes from its last checkpoint
    (pretrain, fine-tune) or restarts idempotently (ingest, embed, select) when claimed again.
    Returns the ids of the stale jobs.
    """
    cutoff = utcnow() - timedelta(seconds=stale_after_seconds)
    stale = session.execute(
        select(Job.id, Job.attempts, Job.max_attempts)
        .where(Job.status == RUNNING, Job.heartbeat_at < cutoff)
        .with_for_update(skip_locked=True)
    ).all()
    for job_id, attempts, max_attempts in stale:
        error = f"worker stopped heartbeating (no heartbeat for {stale_after_seconds:.0f} s)"
        retry = attempts < max_attempts
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == RUNNING, Job.heartbeat_at < cutoff)
            .values(
                status=QUEUED if retry else FAILED,
                retryable=not retry,
                message=f"worker lost; re-queued (attempt {attempts} of {max_attempts})" if retry else "worker lost",
                error=error if retry else f"{error}; gave up after {attempts} attempts, retry to resume",
                worker_id=None,
                finished_at=None if retry else utcnow(),
            )
        )
    return [job_id for job_id, _, _ in stale]


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
