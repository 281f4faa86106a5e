"""Projects and their label classes."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from segloop.platform.core.errors import NotFoundError
from segloop.platform.core.names import LABEL_CLASS_NAME_MAX, check_name
from segloop.platform.db.entities import LabelClassInfo, ProjectInfo, from_row
from segloop.platform.db.orm import LabelClass, Project
from segloop.platform.db.stores import get_row

DEFAULT_PROJECT = "default"


def get_or_create_project(session: Session, name: str, description: str = "") -> ProjectInfo:
    """The project called `name`, created if it does not exist (if another process creates it at the same
    moment, that one is returned)."""
    name = validate_project_name(name)
    row = session.scalar(select(Project).where(Project.name == name))
    if row is None:
        try:
            with session.begin_nested():
                row = Project(name=name, description=description)
                session.add(row)
        except IntegrityError:
            row = session.scalar(select(Project).where(Project.name == name))
            if row is None:
                raise
    return from_row(ProjectInfo, row)


def find_project(session: Session, name: str) -> ProjectInfo | None:
    """The project called `name`, or None (a lookup that never creates one)."""
    row = session.scalar(select(Project).where(Project.name == (name or "").strip()))
    return None if row is None else from_row(ProjectInfo, row)


def validate_project_name(name: str) -> str:
    """The stripped project name, or ValueError naming what is wrong with it (see `core.names.check_name`)."""
    return check_name("project name", name or "", 200)


def get_project(session: Session, name: str) -> ProjectInfo:
    """The project called `name`, or NotFoundError."""
    row = session.scalar(select(Project).where(Project.name == name))
    if row is None:
        raise NotFoundError(f"project {name!r} does not exist")
    return from_row(ProjectInfo, row)


def lock_project(session: Session, name: str) -> ProjectInfo:
    """The project called `name`, its row locked until the transaction ends (PostgreSQL; a SQLite write transaction
    already holds the database's write lock), or NotFoundError."""
    row = session.scalar(select(Project).where(Project.name == name).with_for_update())
    if row is None:
        raise NotFoundError(f"project {name!r} does not exist")
    return from_row(ProjectInfo, row)


def get_project_by_id(session: Session, project_id: int) -> ProjectInfo:
    """The project with this id, or NotFoundError."""
    return from_row(ProjectInfo, get_row(session, Project, project_id, "project"))


def list_projects(session: Session) -> list[ProjectInfo]:
    """All projects, oldest first."""
    return [from_row(ProjectInfo, r) for r in session.scalars(select(Project).order_by(Project.id))]


def get_or_create_label_class(session: Session, project_id: int, name: str, color: str = "#ff0000") -> LabelClassInfo:
    """The label class `name` of a project, created if missing (the name checked like a project's; if another process
    creates it at the same moment, that one is returned)."""
    name = check_name("label class name", name, LABEL_CLASS_NAME_MAX)
    row = session.scalar(
        select(LabelClass).where(LabelClass.project_id == project_id, LabelClass.name == name)
    )
    if row is None:
        position = len(session.scalars(select(LabelClass.id).where(LabelClass.project_id == project_id)).all())
        try:
            with session.begin_nested():
                row = LabelClass(project_id=project_id, name=name, color=color, position=position)
                session.add(row)
        except IntegrityError:  # another process created it at the same moment: that one is the class
            row = session.scalar(
                select(LabelClass).where(LabelClass.project_id == project_id, LabelClass.name == name))
            if row is None:
                raise
    return from_row(LabelClassInfo, row)


def list_label_classes(session: Session, project_id: int) -> list[LabelClassInfo]:
    """A project's label classes in display order."""
    rows = session.scalars(
        select(LabelClass).where(LabelClass.project_id == project_id).order_by(LabelClass.position)
    )
    return [from_row(LabelClassInfo, r) for r in rows]
