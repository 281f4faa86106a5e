"""Review workflow on the services: submit → queue → reject with a comment (back to drafts) → fix and resubmit →
accept (reviewed); per-annotator figures (SQLite and PostgreSQL)."""
from __future__ import annotations

import pytest

from segloop.platform.core.errors import ValidationError
from segloop.platform.db.engine import session_scope
from segloop.platform.db.stores import annotations as annotation_store
from segloop.platform.db.stores import footage
from segloop.platform.services import auth, labeling, review
from segloop.platform.services.access import Actor

PASSWORD = "Review-Flow-Pass-1"


@pytest.fixture
def people(engine, footage_project):
    """An annotator and a reviewer, both granted project 'ui'."""
    actors = {}
    for name, role in (("ann", "annotator"), ("rev", "reviewer")):
        actors[name] = Actor(name, role, auth.add_user(engine, name, role, PASSWORD).id)
        auth.grant(engine, name, "ui")
    return actors


def _frames(engine, video_id: int, count: int):
    """The first frames of a video."""
    with session_scope(engine) as session:
        return footage.list_frames(session, video_id, limit=count)


def _paint(engine, frame_id: int, actor: Actor, status: str, size: int) -> None:
    """Paint object 1 as a size×size square and save it with `status`."""
    loaded = labeling.load_frame_labels(engine, frame_id)
    labels = loaded.labels.copy()
    labels[:] = 0
    labels[0:size, 0:size] = 1
    labeling.save_frame_labels(engine, frame_id, labels, loaded.versions, status=status, actor=actor)


def _latest(engine, frame_id: int):
    """The newest annotation of object 1 on the frame."""
    with session_scope(engine) as session:
        return {a.object_id: a for a in annotation_store.latest_annotations(session, frame_id)}[1]


def test_reject_fix_resubmit_accept(engine, footage_project, people) -> None:
    """The whole loop, with authors, statuses, the comment and the queue checked at every step."""
    ann, rev = people["ann"], people["rev"]
    frame = _frames(engine, footage_project.video_ids[0], 1)[0]
    _paint(engine, frame.id, ann, "submitted", 6)
    queue = review.review_queue(engine, footage_project.project_id, actor=rev)
    assert [(i.frame.id, i.submission.annotator) for i in queue] == [(frame.id, "ann")]
    with pytest.raises(ValidationError, match="needs a comment"):
        review.reject(engine, frame.id, "  \x00 ", actor=rev)
    review.reject(engine, frame.id, "The left edge misses the wheel.\x07", actor=rev)
    assert _latest(engine, frame.id).status == "draft"
    feedback = review.frame_feedback(engine, frame.id)
    assert feedback.comment == "The left edge misses the wheel." and feedback.actor == "rev"
    assert review.review_queue(engine, footage_project.project_id, actor=rev) == []
    queued = labeling.label_queue(engine, footage_project.project_id, video_id=footage_project.video_ids[0])
    assert frame.id in [i.frame.id for i in queued.items], "a rejected frame is back in the annotator's queue"
    with pytest.raises(ValidationError, match="not waiting for review"):
        review.accept(engine, frame.id, actor=rev)
    _paint(engine, frame.id, ann, "submitted", 9)
    assert review.frame_feedback(engine, frame.id) is None
    review.accept(engine, frame.id, actor=rev)
    final = _latest(engine, frame.id)
    assert (final.status, final.author, final.version, final.area) == ("reviewed", "ann", 2, 81)
    [figures] = review.annotator_figures(engine, footage_project.project_id, actor=rev)
    assert (figures.annotator, figures.submitted, figures.accepted, figures.rejected) == ("ann", 1, 1, 1)
    actions = [e.action for e in auth.audit_trail(engine, limit=20)]
    assert "review_rejected" in actions and "review_accepted" in actions


def test_annotator_figures_count_frames_and_time(engine, footage_project, people) -> None:
    """Three submitted frames, one accepted and one rejected: the counts, and a median time between submissions."""
    ann, rev = people["ann"], people["rev"]
    frames = _frames(engine, footage_project.video_ids[0], 3)
    for frame in frames:
        _paint(engine, frame.id, ann, "submitted", 4)
    review.accept(engine, frames[0].id, actor=rev)
    review.reject(engine, frames[1].id, "redo", actor=rev)
    [figures] = review.annotator_figures(engine, footage_project.project_id, actor=ann)
    assert (figures.submitted, figures.accepted, figures.rejected) == (3, 1, 1)
    assert figures.median_seconds_per_frame is not None and 0 <= figures.median_seconds_per_frame < 60
    assert review.annotator_figures(engine, footage_project.project_id, actor=rev)[0] == figures


def test_a_decision_is_never_made_on_masks_the_reviewer_did_not_see(engine, footage_project, people) -> None:
    """Accept approved a draft saved after the submission (the reviewer never saw it), and a resubmission made while
    the reviewer looked at the first one: both are refused; the current submission is accepted."""
    ann, rev = people["ann"], people["rev"]
    frame = _frames(engine, footage_project.video_ids[0], 1)[0]
    _paint(engine, frame.id, ann, "submitted", 4)
    shown = labeling.load_frame_labels(engine, frame.id).versions
    _paint(engine, frame.id, ann, "draft", 7)
    with pytest.raises(ValidationError, match="was edited after it was submitted"):
        review.accept(engine, frame.id, actor=rev, seen=shown)
    assert _latest(engine, frame.id).status == "draft"
    _paint(engine, frame.id, ann, "submitted", 8)
    with pytest.raises(ValidationError, match="resubmitted with other masks after you opened it"):
        review.reject(engine, frame.id, "redo", actor=rev, seen=shown)
    review.accept(engine, frame.id, actor=rev, seen=labeling.load_frame_labels(engine, frame.id).versions)
    assert (_latest(engine, frame.id).status, _latest(engine, frame.id).area) == ("reviewed", 64)


def test_a_stale_editor_does_not_wipe_a_rejection(engine, footage_project, people) -> None:
    """An editor opened before the reviewer's rejection submitted the same masks again and the comment vanished
    unseen; now the save conflicts, naming the decision and its comment; reloaded, it goes through."""
    ann, rev = people["ann"], people["rev"]
    frame = _frames(engine, footage_project.video_ids[0], 1)[0]
    _paint(engine, frame.id, ann, "submitted", 4)
    stale = labeling.load_frame_labels(engine, frame.id)
    review.reject(engine, frame.id, "fix the edge", actor=rev)
    with pytest.raises(annotation_store.ConflictError, match="was rejected by rev after you opened it: 'fix the edge'"):
        labeling.save_frame_labels(engine, frame.id, stale.labels, stale.versions, status="submitted", actor=ann,
                                   review_step=stale.review_step)
    assert review.frame_feedback(engine, frame.id).comment == "fix the edge"
    fresh = labeling.load_frame_labels(engine, frame.id)
    labeling.save_frame_labels(engine, frame.id, fresh.labels, fresh.versions, status="submitted", actor=ann,
                               review_step=fresh.review_step)
    assert review.frame_feedback(engine, frame.id) is None


def test_saving_as_reviewed_is_an_acceptance(engine, footage_project, people) -> None:
    """A reviewer saving a frame as 'reviewed' on the Label page left it in the review queue as submitted, with no
    acceptance counted and nothing in the audit trail."""
    ann, rev = people["ann"], people["rev"]
    frame = _frames(engine, footage_project.video_ids[0], 1)[0]
    _paint(engine, frame.id, ann, "submitted", 4)
    _paint(engine, frame.id, rev, "reviewed", 4)
    assert review.review_queue(engine, footage_project.project_id, actor=rev) == []
    [figures] = review.annotator_figures(engine, footage_project.project_id, actor=rev)
    assert (figures.annotator, figures.submitted, figures.accepted) == ("ann", 1, 1)
    assert "review_accepted" in [e.action for e in auth.audit_trail(engine, limit=5)]
    # A reviewer's own frame saved straight as reviewed counted an acceptance of a frame never submitted (the
    # figures read submitted 1, accepted 2); it is submitted and accepted.
    other = _frames(engine, footage_project.video_ids[0], 2)[1]
    _paint(engine, other.id, rev, "reviewed", 4)
    figures = {f.annotator: f for f in review.annotator_figures(engine, footage_project.project_id, actor=rev)}
    assert (figures["rev"].submitted, figures["rev"].accepted) == (1, 1)
