"""The audit trail: one row per login, failed login, job launch, user change, import, export and review."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from segloop.platform.core.errors import ValidationError
from segloop.platform.db.entities import AuditEventInfo, from_row
from segloop.platform.db.orm import AuditEvent

ACTIONS = ("login", "login_failed", "login_throttled", "logout", "user_add", "user_remove", "user_passwd", "user_role",
           "user_email", "user_grant", "user_revoke", "job_submit", "job_cancel", "job_retry", "review_accepted",
           "review_rejected", "tag_frames", "untag_frames", "import", "export")


def record(session: Session, actor: str, action: str, target: str = "", client: str = "",
           detail: dict[str, Any] | None = None) -> AuditEventInfo:
    """Append one audit event (fields cut to their column sizes); `action` is one of ACTIONS."""
    if action not in ACTIONS:
        raise ValueError(f"audit action {action!r} is not one of ACTIONS")
    row = AuditEvent(actor=actor[:120], action=action[:40], target=target[:255], client=client[:120],
                     detail=detail or {})
    session.add(row)
    session.flush()
    return from_row(AuditEventInfo, row)


def recent_events(session: Session, *, action: str | None = None, limit: int = 200) -> list[AuditEventInfo]:
    """The newest audit events first (optionally of one action: ValidationError when it is none of ACTIONS)."""
    if action is not None and action not in ACTIONS:
        raise ValidationError(f"action: {action!r} is not an audit action; one of {', '.join(ACTIONS)}")
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    return [from_row(AuditEventInfo, r) for r in session.scalars(query)]


def login_failures_of_client(session: Session, client: str, since: datetime, limit: int = 50
                             ) -> list[AuditEventInfo]:
    """Newest-first failed sign-ins from a client since `since`, whatever signed in between."""
    query = (select(AuditEvent).where(AuditEvent.action == "login_failed", AuditEvent.client == client,
                                      AuditEvent.created_at >= since)
             .order_by(AuditEvent.id.desc()).limit(limit))
    return [from_row(AuditEventInfo, r) for r in session.scalars(query)]


def login_events_since_success(session: Session, *, target: str | None = None, client: str | None = None,
                               limit: int = 50) -> list[AuditEventInfo]:
    """Newest-first login outcomes (login, login_failed) for a user name or a client, up to the last success."""
    query = select(AuditEvent).where(AuditEvent.action.in_(("login", "login_failed")))
    query = query.where(AuditEvent.target == target) if target is not None else query.where(AuditEvent.client == client)
    events = [from_row(AuditEventInfo, r) for r in session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit))]
    for position, event in enumerate(events):
        if event.action == "login":
            return events[:position]
    return events

