"""Per-frame signals of model runs (e.g. propagation confidence) that the uncertainty selectors read."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from segloop.platform.db.orm import Frame, FrameScore, Video
from segloop.platform.db.stores import id_chunks


def add_frame_scores(
    session: Session, name: str, values: Mapping[int, float], *, job_id: int | None = None,
    checkpoint_id: int | None = None,
) -> int:
    """Record one signal for many frames ({frame_id: value}); returns how many rows."""
    rows = [dict(frame_id=int(f), name=name, value=float(v), job_id=job_id, checkpoint_id=checkpoint_id)
            for f, v in values.items()]
    if rows:
        session.execute(insert(FrameScore), rows)
    return len(rows)


def _newest_values(session: Session, newest) -> dict[int, float]:
    """{frame_id: value} of the score rows whose ids the subquery `newest` (frame_id, id) selects."""
    rows = session.execute(select(FrameScore.frame_id, FrameScore.value).join(newest, newest.c.id == FrameScore.id))
    return {int(frame_id): float(value) for frame_id, value in rows}


def latest_frame_scores(session: Session, project_id: int, name: str) -> dict[int, float]:
    """{frame_id: value} of the newest recorded value of a signal for every frame of a project."""
    newest = (
        select(FrameScore.frame_id, func.max(FrameScore.id).label("id"))
        .join(Frame, Frame.id == FrameScore.frame_id)
        .join(Video, Video.id == Frame.video_id)
        .where(Video.project_id == project_id, FrameScore.name == name)
        .group_by(FrameScore.frame_id)
        .subquery()
    )
    return _newest_values(session, newest)


def latest_scores_of_frames(session: Session, frame_ids: Sequence[int], name: str) -> dict[int, float]:
    """{frame_id: value} of the newest recorded value of a signal for the given frames (unscored ones left out)."""
    found: dict[int, float] = {}
    for chunk in id_chunks(frame_ids):
        newest = (select(FrameScore.frame_id, func.max(FrameScore.id).label("id"))
                  .where(FrameScore.name == name, FrameScore.frame_id.in_(chunk))
                  .group_by(FrameScore.frame_id).subquery())
        found.update(_newest_values(session, newest))
    return found


def score_names(session: Session, project_id: int) -> list[str]:
    """Signals recorded for a project's frames."""
    query = (
        select(FrameScore.name).distinct()
        .join(Frame, Frame.id == FrameScore.frame_id)
        .join(Video, Video.id == Frame.video_id)
        .where(Video.project_id == project_id)
        .order_by(FrameScore.name)
    )
    return list(session.scalars(query))
