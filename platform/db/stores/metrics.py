"""Measured numbers (metrics rows) of jobs, checkpoints and projects."""
from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from segloop.platform.db.entities import MetricInfo, from_row
from segloop.platform.db.orm import Metric


def add_metrics(
    session: Session,
    values: Iterable[tuple[str, str, str, float]],
    *,
    job_id: int | None = None,
    project_id: int | None = None,
    checkpoint_id: int | None = None,
    step: int | None = None,
) -> int:
    """Insert (scope, scope_key, name, value) rows; returns how many."""
    rows = [
        dict(job_id=job_id, project_id=project_id, checkpoint_id=checkpoint_id, scope=scope,
             scope_key=key, name=name, value=float(value), step=step)
        for scope, key, name, value in values
    ]
    if rows:
        session.execute(insert(Metric), rows)
    return len(rows)


def list_metrics(
    session: Session, *, job_id: int | None = None, project_id: int | None = None, name: str | None = None
) -> list[MetricInfo]:
    """Metrics filtered by job, project and name, oldest first."""
    query = select(Metric).order_by(Metric.id)
    if job_id is not None:
        query = query.where(Metric.job_id == job_id)
    if project_id is not None:
        query = query.where(Metric.project_id == project_id)
    if name is not None:
        query = query.where(Metric.name == name)
    return [from_row(MetricInfo, r) for r in session.scalars(query)]


def newest_metrics(session: Session, scope: str, project_id: int | None = None, limit: int = 20_000
                   ) -> list[MetricInfo]:
    """The newest `limit` metrics of a scope (video, class, overall, ...), optionally of one project; newest first."""
    query = select(Metric).where(Metric.scope == scope).order_by(Metric.id.desc()).limit(limit)
    if project_id is not None:
        query = query.where(Metric.project_id == project_id)
    return [from_row(MetricInfo, r) for r in session.scalars(query)]
