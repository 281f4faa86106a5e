"""Server-side web sessions, keyed by the SHA-256 of the random token in the browser's cookie."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from segloop.platform.db.entities import UserSessionInfo, from_row
from segloop.platform.db.orm import UserSession


def open_session(session: Session, token_hash: str, user_id: int, expires_at: datetime,
                 client: str = "") -> UserSessionInfo:
    """Store a new web session."""
    row = UserSession(token_hash=token_hash, user_id=user_id, expires_at=expires_at, client=client[:120])
    session.add(row)
    session.flush()
    return from_row(UserSessionInfo, row)


def find_session(session: Session, token_hash: str) -> UserSessionInfo | None:
    """The web session with this token hash, or None."""
    row = session.scalar(select(UserSession).where(UserSession.token_hash == token_hash))
    return None if row is None else from_row(UserSessionInfo, row)


def close_session(session: Session, token_hash: str) -> bool:
    """Delete a web session (logout); False when there was none."""
    return bool(session.execute(delete(UserSession).where(UserSession.token_hash == token_hash)).rowcount)


def close_user_sessions(session: Session, user_id: int) -> int:
    """Delete every web session of a user (password change, removal); how many were closed."""
    return int(session.execute(delete(UserSession).where(UserSession.user_id == user_id)).rowcount or 0)


def purge_expired(session: Session, now: datetime) -> int:
    """Delete sessions that expired before `now`; how many."""
    return int(session.execute(delete(UserSession).where(UserSession.expires_at < now)).rowcount or 0)
