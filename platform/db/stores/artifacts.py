"""Checkpoints and embedding sets: model and vector files registered in the DB."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from segloop.platform.core.errors import NotFoundError, ValidationError
from segloop.platform.db.entities import CheckpointInfo, EmbeddingSetInfo, from_row
from segloop.platform.db.orm import Checkpoint, EmbeddingSet
from segloop.platform.db.stores import get_row


def add_checkpoint(
    session: Session,
    kind: str,
    backbone: str,
    path: str,
    *,
    project_id: int | None = None,
    job_id: int | None = None,
    step: int | None = None,
    params: dict[str, Any] | None = None,
) -> CheckpointInfo:
    """Register a model file produced by a job."""
    row = Checkpoint(kind=kind, backbone=backbone, path=path, project_id=project_id, job_id=job_id,
                     step=step, params=params or {})
    session.add(row)
    session.flush()
    return from_row(CheckpointInfo, row)


def checkpoints_under(session: Session, folder: str) -> list[CheckpointInfo]:
    """Registered checkpoints whose file or folder is `folder` (an absolute path) or lies inside it."""
    inside = Checkpoint.path.startswith(folder.rstrip("/") + "/", autoescape=True)
    rows = session.scalars(select(Checkpoint).where((Checkpoint.path == folder) | inside).order_by(Checkpoint.id))
    return [from_row(CheckpointInfo, row) for row in rows]


def get_checkpoint(session: Session, checkpoint_id: int) -> CheckpointInfo:
    """The checkpoint with this id, or NotFoundError."""
    return from_row(CheckpointInfo, get_row(session, Checkpoint, checkpoint_id, "checkpoint"))


def usable_checkpoint(session: Session, checkpoint_id: int, kinds: tuple[str, ...]) -> CheckpointInfo:
    """The checkpoint with this id when it is of one of `kinds` and its file exists; NotFoundError or
    ValidationError saying why not (the one place a checkpoint id becomes a weights file)."""
    checkpoint = get_checkpoint(session, checkpoint_id)
    if checkpoint.kind not in kinds:
        raise ValidationError(f"checkpoint {checkpoint_id} is a {checkpoint.kind} checkpoint; "
                              f"a {' or '.join(kinds)} checkpoint is needed here")
    if not Path(checkpoint.path).exists():  # a file, or a folder for a VOS model
        raise NotFoundError(f"checkpoint {checkpoint_id}: its weights file is missing")
    return checkpoint


def list_checkpoints(session: Session, project_id: int | None = None, kind: str | None = None) -> list[CheckpointInfo]:
    """Checkpoints, newest first, optionally of one project and kind."""
    query = select(Checkpoint).order_by(Checkpoint.id.desc())
    if project_id is not None:
        query = query.where(Checkpoint.project_id == project_id)
    if kind is not None:
        query = query.where(Checkpoint.kind == kind)
    return [from_row(CheckpointInfo, r) for r in session.scalars(query)]


def add_embedding_set(
    session: Session,
    project_id: int,
    name: str,
    backbone: str,
    dim: int,
    count: int,
    vectors_path: str,
    frame_ids_path: str,
    *,
    checkpoint_id: int | None = None,
    index_path: str | None = None,
    params: dict[str, Any] | None = None,
) -> EmbeddingSetInfo:
    """Register per-frame vectors of a project."""
    row = EmbeddingSet(project_id=project_id, name=name, backbone=backbone, dim=dim, count=count,
                       vectors_path=vectors_path, frame_ids_path=frame_ids_path, checkpoint_id=checkpoint_id,
                       index_path=index_path, params=params or {})
    session.add(row)
    session.flush()
    return from_row(EmbeddingSetInfo, row)


def get_embedding_set(session: Session, embedding_set_id: int) -> EmbeddingSetInfo:
    """The embedding set with this id, or NotFoundError."""
    return from_row(EmbeddingSetInfo, get_row(session, EmbeddingSet, embedding_set_id, "embedding set"))


def list_embedding_sets(session: Session, project_id: int) -> list[EmbeddingSetInfo]:
    """A project's embedding sets, newest first."""
    rows = session.scalars(
        select(EmbeddingSet).where(EmbeddingSet.project_id == project_id).order_by(EmbeddingSet.id.desc())
    )
    return [from_row(EmbeddingSetInfo, r) for r in rows]
