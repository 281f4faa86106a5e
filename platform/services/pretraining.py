"""Pretraining on a project's stored frames: the DB side of `segloop pretrain --project`."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from segloop.platform.core.settings import Settings, load_settings
from segloop.platform.core.storage import resolve_inside
from segloop.platform.db.engine import get_engine, session_scope
from segloop.platform.db.entities import CheckpointInfo
from segloop.platform.db.stores import artifacts, footage, projects
from segloop.platform.services.artifacts import require_fresh_out


class TrainingDataError(ValueError):
    """A project that cannot be trained on; the message says why."""


def project_clips(project: str, settings: Settings | None = None) -> list[list[Path]]:
    """The stored frame files of every video of a project, each list in temporal order."""
    settings = settings or load_settings()
    with session_scope(get_engine(settings)) as session:
        info = projects.get_project(session, project)
        videos = footage.list_videos(session, info.id)
        clips = [[resolve_inside(settings.data_dir, f.image_path) for f in footage.list_frames(session, v.id)]
                 for v in videos]
    clips = [clip for clip in clips if len(clip) >= 2]
    if not clips:
        raise TrainingDataError(f"project {project!r} has no video with at least 2 frames; ingest footage first")
    return clips


def pretrain_project(
    project: str,
    config,
    out_dir: str | Path,
    *,
    resume: bool = False,
    settings: Settings | None = None,
    job_id: int | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> tuple[object, CheckpointInfo]:
    """Pretrain on the project's frames and register the teacher backbone as a checkpoint."""
    from segloop.pretrain.train import pretrain

    settings = settings or load_settings()
    require_fresh_out(out_dir, settings)  # a resume over a registered run rewrote the files its record describes
    result = pretrain(config, project_clips(project, settings), out_dir, resume=resume, progress=progress)
    return result, register_pretrain_checkpoint(project, config, result, settings=settings, job_id=job_id)


def register_pretrain_checkpoint(project: str, config, result, *, settings: Settings | None = None,
                                 job_id: int | None = None) -> CheckpointInfo:
    """Record a finished (or time-limited) pretraining run's teacher backbone as a project checkpoint; a run that
    trained no step is refused (its untrained encoder would become the project's default)."""
    if result.step == 0:
        raise TrainingDataError("pretraining stopped before its first step (the --max-minutes budget ran out while "
                                "it started); nothing was registered: give it more minutes")
    settings = settings or load_settings()
    with session_scope(get_engine(settings)) as session:
        info = projects.get_project(session, project)
        return artifacts.add_checkpoint(
            session, "pretrain", config.model.backbone, str(Path(result.teacher_path).resolve()),
            project_id=info.id, job_id=job_id, step=result.step,
            params={"out_dir": str(Path(result.out_dir).resolve()), "last_loss": result.last_loss,
                    "stopped_by_time": result.stopped_by_time, "total_steps": result.total_steps,
                    "distil_steps": result.distil_steps},
        )
