"""Review workflow: submitted frames wait for a reviewer, who accepts them (status reviewed) or rejects them with a
comment (back to the annotator's queue as drafts, the comment shown on the frame); per-annotator figures."""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine

from segloop.platform.core.errors import ValidationError
from segloop.platform.core.names import check_comment
from segloop.platform.db.engine import session_scope
from segloop.platform.db.entities import FrameInfo, ReviewEventInfo
from segloop.platform.db.stores import annotations as annotation_store
from segloop.platform.db.stores import audit
from segloop.platform.db.stores import reviews as review_store
from segloop.platform.services import access
from segloop.platform.services.access import Actor
from segloop.platform.services.auth import actor_name

WORK_SESSION_GAP = timedelta(minutes=30)  # a longer pause between two submissions is a break, not time on a frame


@dataclass(frozen=True)
class ReviewItem:
    """A frame waiting for review: its submission (who, when), the frame and its video's name."""

    submission: ReviewEventInfo
    frame: FrameInfo
    video_name: str


@dataclass(frozen=True)
class AnnotatorFigures:
    """One annotator's work on a project: frames submitted, accepted, rejected, median seconds per frame."""

    annotator: str
    submitted: int
    accepted: int
    rejected: int
    median_seconds_per_frame: float | None


def review_queue(engine: Engine, project_id: int, *, actor: Actor | None = None, limit: int = 200) -> list[ReviewItem]:
    """The project's frames whose newest review step is a submission, oldest submission first (reviewers)."""
    access.require(engine, actor, "review", project_id)
    with session_scope(engine) as session:
        return [ReviewItem(*row) for row in review_store.awaiting_review(session, project_id, limit)]


def _decide(engine: Engine, frame_id: int, kind: str, status: str, actor: Actor | None, comment: str,
            client: str, seen: dict[int, int] | None) -> ReviewEventInfo:
    """Record a decision on a frame awaiting review and move its newest masks to `status`; audited. With `seen`
    (the {object id: version} the reviewer looked at), a frame whose masks changed since is refused."""
    access.require_frame(engine, actor, "review", frame_id)
    reviewer = actor_name(actor)
    with session_scope(engine) as session:
        latest = review_store.latest_events(session, [frame_id]).get(frame_id)
        if latest is None or latest.kind != "submitted":
            raise ValidationError(f"frame {frame_id} is not waiting for review (submit it from the Label page first)")
        annotations = annotation_store.latest_annotations(session, frame_id)
        if any(a.status == "draft" for a in annotations):
            raise ValidationError(f"frame {frame_id} was edited after it was submitted (a newer draft is saved); it "
                                "waits for its next submission")
        if seen is not None and {a.object_id: a.version for a in annotations} != seen:
            raise ValidationError(f"frame {frame_id} was resubmitted with other masks after you opened it; look at it "
                                "again before deciding")
        for annotation in annotations:
            if annotation.status != status:
                annotation_store.set_status(session, annotation.id, status)
        event = review_store.record_event(session, frame_id, kind, reviewer, latest.annotator, comment)
        audit.record(session, reviewer, f"review_{kind}", f"frame {frame_id}", client,
                     {"annotator": latest.annotator})
    return event


def accept(engine: Engine, frame_id: int, *, actor: Actor | None = None, client: str = "",
           seen: dict[int, int] | None = None) -> ReviewEventInfo:
    """Accept a submitted frame: its masks become `reviewed` (refused if they changed since `seen`)."""
    return _decide(engine, frame_id, "accepted", "reviewed", actor, "", client, seen)


def reject(engine: Engine, frame_id: int, comment: str, *, actor: Actor | None = None,
           client: str = "", seen: dict[int, int] | None = None) -> ReviewEventInfo:
    """Reject a submitted frame with a comment: its masks go back to `draft` (the annotator's queue)."""
    comment = check_comment("review comment", comment)
    if not comment:
        raise ValidationError("review comment: say what to fix (a rejection needs a comment)")
    return _decide(engine, frame_id, "rejected", "draft", actor, comment, client, seen)


def frame_feedback(engine: Engine, frame_id: int) -> ReviewEventInfo | None:
    """The reviewer's rejection to show on the frame, while it is the frame's newest review step (else None)."""
    with session_scope(engine) as session:
        latest = review_store.latest_events(session, [frame_id]).get(frame_id)
    return latest if latest is not None and latest.kind == "rejected" else None


def annotator_figures(engine: Engine, project_id: int, *, actor: Actor | None = None) -> list[AnnotatorFigures]:
    """Per annotator: frames submitted, frames accepted (newest decision), rejections, median time per frame.

    Time per frame is the median pause between an annotator's consecutive submissions, leaving out pauses over
    30 minutes (breaks) and the first submission of each sitting.
    """
    access.require(engine, actor, "view", project_id)
    with session_scope(engine) as session:
        events = review_store.project_events(session, project_id)
    submitted: dict[str, set[int]] = {}
    submit_times: dict[str, list] = {}
    rejected: dict[str, int] = {}
    decision: dict[int, tuple[str, str]] = {}
    for event in events:
        if event.kind == "submitted":
            submitted.setdefault(event.annotator, set()).add(event.frame_id)
            submit_times.setdefault(event.annotator, []).append(event.created_at)
        else:
            decision[event.frame_id] = (event.annotator, event.kind)
            if event.kind == "rejected":
                rejected[event.annotator] = rejected.get(event.annotator, 0) + 1
    accepted: dict[str, int] = {}
    for annotator, kind in decision.values():
        if kind == "accepted":
            accepted[annotator] = accepted.get(annotator, 0) + 1
    names = sorted(set(submitted) | set(rejected) | set(accepted))
    return [AnnotatorFigures(name, len(submitted.get(name, ())), accepted.get(name, 0), rejected.get(name, 0),
                             _median_pause(submit_times.get(name, []))) for name in names]


def _median_pause(times: list) -> float | None:
    """The median gap in seconds between consecutive times, ignoring gaps longer than a work-session break."""
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:]) if b - a <= WORK_SESSION_GAP]
    return statistics.median(gaps) if gaps else None
