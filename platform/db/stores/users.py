"""Users and their project grants (the password hash is read only by `credentials`)."""
from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from segloop.platform.core.errors import NotFoundError, ValidationError
from segloop.platform.db.entities import ProjectInfo, UserInfo, from_row
from segloop.platform.db.orm import Project, ProjectGrant, User

ROLES = ("admin", "reviewer", "annotator")


def _find(session: Session, name: str) -> User | None:
    """The user row called `name`: exactly, else the one whose name differs only in letter case (names are told
    apart regardless of case), or None."""
    row = session.scalar(select(User).where(User.name == name))
    if row is not None:
        return row
    alike = session.scalars(select(User).where(func.lower(User.name) == name.lower()).limit(2)).all()
    return alike[0] if len(alike) == 1 else None  # user names are ASCII: the database's lower() suffices


def _row(session: Session, name: str) -> User:
    """The user row called `name` (letter case aside), or NotFoundError."""
    row = _find(session, name)
    if row is None:
        raise NotFoundError(f"user {name!r} does not exist")
    return row


def add_user(session: Session, name: str, role: str, password_hash: str, email: str | None = None) -> UserInfo:
    """A new user; ValidationError when the name or email is taken or the role is unknown."""
    if role not in ROLES:
        raise ValidationError(f"role: {role!r} is not one of {', '.join(ROLES)}")
    taken = _find(session, name)
    if taken is not None:
        raise ValidationError(f"user {name!r} already exists" if taken.name == name
                              else f"user name {name!r}: {taken.name!r} already exists (names differing only in "
                                   f"letter case would be mistaken for each other)")
    if email is not None and find_user_by_email(session, email) is not None:
        raise ValidationError(f"email {email!r} already belongs to another user")
    row = User(name=name, role=role, password_hash=password_hash, email=email)
    session.add(row)
    session.flush()
    return from_row(UserInfo, row)


def get_user(session: Session, name: str) -> UserInfo:
    """The user called `name`, or NotFoundError."""
    return from_row(UserInfo, _row(session, name))


def get_user_by_id(session: Session, user_id: int) -> UserInfo | None:
    """The user with this id, or None (removed)."""
    row = session.get(User, user_id)
    return None if row is None else from_row(UserInfo, row)


def find_user_by_email(session: Session, email: str) -> UserInfo | None:
    """The user whose email is `email` (case-insensitive), or None."""
    row = session.scalar(select(User).where(func.lower(User.email) == email.lower()))
    return None if row is None else from_row(UserInfo, row)


def credentials(session: Session, name: str) -> tuple[UserInfo, str] | None:
    """(user, stored password hash) of the user called `name` (letter case aside), or None."""
    row = _find(session, name)
    return None if row is None else (from_row(UserInfo, row), row.password_hash)


def list_users(session: Session) -> list[UserInfo]:
    """Every user, by name."""
    return [from_row(UserInfo, r) for r in session.scalars(select(User).order_by(User.name))]


def count_admins(session: Session) -> int:
    """How many users have the admin role."""
    return int(session.scalar(select(func.count(User.id)).where(User.role == "admin")) or 0)


def remove_user(session: Session, name: str) -> UserInfo:
    """Delete a user (its sessions and grants go with it); the removed user."""
    row = _row(session, name)
    info = from_row(UserInfo, row)
    session.delete(row)
    session.flush()
    return info


def set_password_hash(session: Session, name: str, password_hash: str) -> UserInfo:
    """Replace a user's password hash."""
    row = _row(session, name)
    row.password_hash = password_hash
    session.flush()
    return from_row(UserInfo, row)


def set_role(session: Session, name: str, role: str) -> UserInfo:
    """Change a user's role."""
    if role not in ROLES:
        raise ValidationError(f"role: {role!r} is not one of {', '.join(ROLES)}")
    row = _row(session, name)
    row.role = role
    session.flush()
    return from_row(UserInfo, row)


def set_email(session: Session, name: str, email: str | None) -> UserInfo:
    """Set or clear the identity-provider email mapped to a user."""
    row = _row(session, name)
    if email is not None:
        other = session.scalar(select(User.id).where(func.lower(User.email) == email.lower(), User.id != row.id))
        if other is not None:
            raise ValidationError(f"email {email!r} already belongs to another user")
    row.email = email
    session.flush()
    return from_row(UserInfo, row)


def grant(session: Session, user_id: int, project_id: int) -> bool:
    """Let a user work on a project; False when the grant already existed."""
    exists = session.scalar(select(ProjectGrant.id).where(ProjectGrant.user_id == user_id,
                                                          ProjectGrant.project_id == project_id))
    if exists is not None:
        return False
    session.add(ProjectGrant(user_id=user_id, project_id=project_id))
    session.flush()
    return True


def revoke(session: Session, user_id: int, project_id: int) -> bool:
    """Withdraw a user's grant on a project; False when there was none."""
    result = session.execute(delete(ProjectGrant).where(ProjectGrant.user_id == user_id,
                                                        ProjectGrant.project_id == project_id))
    return bool(result.rowcount)


def granted_project_ids(session: Session, user_id: int) -> set[int]:
    """Ids of the projects a user may work on."""
    return set(session.scalars(select(ProjectGrant.project_id).where(ProjectGrant.user_id == user_id)))


def granted_projects(session: Session, user_id: int) -> list[ProjectInfo]:
    """The projects a user may work on, oldest first."""
    rows = session.scalars(select(Project).join(ProjectGrant, ProjectGrant.project_id == Project.id)
                           .where(ProjectGrant.user_id == user_id).order_by(Project.id))
    return [from_row(ProjectInfo, r) for r in rows]
