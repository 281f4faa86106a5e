"""The model and vector files registered for a project: checkpoints and embedding sets."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from segloop.platform.core.errors import ValidationError
from segloop.platform.core.settings import Settings
from segloop.platform.db.engine import get_engine, session_scope, sqlite_file
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


def require_fresh_out(out_dir: str | Path, settings: Settings, *, only_with_a_database: bool = False) -> None:
    """ValidationError when `out_dir` holds a registered checkpoint: a finished run, whose files training would
    overwrite under the registered record (a folder of an interrupted run, with no checkpoint yet, resumes). With
    `only_with_a_database` (commands that need no database) nothing is asked, or created, when there is none."""
    if only_with_a_database and not (settings.database_url or Path(sqlite_file(settings.db_url) or "").is_file()):
        return
    with session_scope(get_engine(settings)) as session:
        found = artifacts.checkpoints_under(session, str(Path(out_dir).resolve()))
    if found:
        raise ValidationError(f"--out {out_dir}: holds registered checkpoint {found[0].id} ({found[0].kind}) of a "
                            "finished run, which this run would overwrite; give a new folder (the same --out resumes "
                            "only an interrupted run)")
