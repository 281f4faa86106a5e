"""The model and vector files registered for a project: checkpoints and embedding sets."""
from __future__ import annotations

from sqlalchemy import Engine

from segloop.platform.db.engine import session_scope
from segloop.platform.db.entities import CheckpointInfo, EmbeddingSetInfo
from segloop.platform.db.stores import artifacts


def embedding_sets(engine: Engine, project_id: int) -> list[EmbeddingSetInfo]:
    """A project's embedding sets, newest first."""
    with session_scope(engine) as session:
        return artifacts.list_embedding_sets(session, project_id)


def embedding_set(engine: Engine, embedding_set_id: int) -> EmbeddingSetInfo:
    """The embedding set with this id, or NotFoundError."""
    with session_scope(engine) as session:
        return artifacts.get_embedding_set(session, embedding_set_id)


def checkpoints(engine: Engine, project_id: int | None = None) -> list[CheckpointInfo]:
    """Checkpoints, newest first, optionally of one project."""
    with session_scope(engine) as session:
        return artifacts.list_checkpoints(session, project_id)


def checkpoint(engine: Engine, checkpoint_id: int) -> CheckpointInfo:
    """The checkpoint with this id, or NotFoundError."""
    with session_scope(engine) as session:
        return artifacts.get_checkpoint(session, checkpoint_id)
