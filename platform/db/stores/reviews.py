"""Review history of frames: submitted by an annotator, accepted or rejected (with a comment) by a reviewer."""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from segloop.platform.db.entities import FrameInfo, ReviewEventInfo, from_row
from segloop.platform.db.orm import Frame, ReviewEvent, Video
from segloop.platform.db.stores import id_chunks

KINDS = ("submitted", "accepted", "rejected")


def record_event(session: Session, frame_id: int, kind: str, actor: str, annotator: str,
                 comment: str = "") -> ReviewEventInfo:
    """Append one step to a frame's review history (the project is the frame's)."""
    if kind not in KINDS:
        raise ValueError(f"review event: {kind!r} is not one of {', '.join(KINDS)}")
    project_id = session.scalar(select(Video.project_id).join(Frame, Frame.video_id == Video.id)
                                .where(Frame.id == frame_id))
    if project_id is None:
        raise LookupError(f"frame {frame_id} does not exist")
    row = ReviewEvent(frame_id=frame_id, project_id=project_id, kind=kind, actor=actor, annotator=annotator,
                      comment=comment)
    session.add(row)
    session.flush()
    return from_row(ReviewEventInfo, row)


def _latest_ids():
    """SELECT the id of each frame's newest review event."""
    return select(func.max(ReviewEvent.id)).group_by(ReviewEvent.frame_id)


def latest_events(session: Session, frame_ids: Sequence[int]) -> dict[int, ReviewEventInfo]:
    """{frame id: its newest review event} for the given frames that have one."""
    found: dict[int, ReviewEventInfo] = {}
    for chunk in id_chunks(frame_ids):
        rows = session.scalars(select(ReviewEvent).where(ReviewEvent.frame_id.in_(chunk),
                                                         ReviewEvent.id.in_(_latest_ids())))
        found.update({r.frame_id: from_row(ReviewEventInfo, r) for r in rows})
    return found


def awaiting_review(session: Session, project_id: int,
                    limit: int = 200) -> list[tuple[ReviewEventInfo, FrameInfo, str]]:
    """(submission, frame, video name) of the project's frames whose newest review event is a submission."""
    rows = session.execute(
        select(ReviewEvent, Frame, Video.name).join(Frame, Frame.id == ReviewEvent.frame_id)
        .join(Video, Video.id == Frame.video_id)
        .where(ReviewEvent.project_id == project_id, ReviewEvent.kind == "submitted",
               ReviewEvent.id.in_(_latest_ids()))
        .order_by(ReviewEvent.id).limit(limit))
    return [(from_row(ReviewEventInfo, e), from_row(FrameInfo, f), name) for e, f, name in rows]


def project_events(session: Session, project_id: int) -> list[ReviewEventInfo]:
    """Every review event of a project, oldest first."""
    rows = session.scalars(select(ReviewEvent).where(ReviewEvent.project_id == project_id).order_by(ReviewEvent.id))
    return [from_row(ReviewEventInfo, r) for r in rows]
