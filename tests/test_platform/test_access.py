"""Roles × actions, called on the services directly (no UI): each forbidden pair is refused and writes nothing,
each allowed pair works; annotators and reviewers only reach granted projects (SQLite and PostgreSQL)."""
from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, select

from segloop.platform.core.errors import AccessDenied
from segloop.platform.db.engine import session_scope
from segloop.platform.db.orm import Annotation, AuditEvent, Job, LabelClass, User
from segloop.platform.db.stores import footage, projects
from segloop.platform.services import access, auth, labeling, library, review, uploads
from segloop.platform.services.access import Actor

ROLES = ("annotator", "reviewer", "admin")
PASSWORD = "Role-Matrix-Pass-1"


@pytest.fixture
def team(engine, footage_project):
    """An admin, a reviewer and an annotator; project 'ui' granted to the two non-admins, project 'other' to nobody."""
    actors = {}
    for role in ROLES:
        user = auth.add_user(engine, f"{role}1", role, PASSWORD)
        actors[role] = Actor(user.name, role, user.id)
        if role != "admin":
            auth.grant(engine, user.name, "ui")
    with session_scope(engine) as session:
        other = projects.get_or_create_project(session, "other")
    return actors, footage_project, other


def _count(engine, model) -> int:
    """Rows in a table."""
    with session_scope(engine) as session:
        return int(session.scalar(select(func.count()).select_from(model)))


def _frame(engine, video_id: int, index: int = 0):
    """A frame of a video."""
    with session_scope(engine) as session:
        return footage.list_frames(session, video_id, limit=index + 1)[index]


def _labels(engine, frame_id: int) -> np.ndarray:
    """A small mask for object 1 on the frame."""
    loaded = labeling.load_frame_labels(engine, frame_id)
    labels = loaded.labels.copy()
    labels[2:8, 2:8] = 1
    return labels


def _save(engine, frame_id: int, status: str, actor: Actor):
    """Save the small mask with the actor."""
    versions = labeling.load_frame_labels(engine, frame_id).versions
    return labeling.save_frame_labels(engine, frame_id, _labels(engine, frame_id), versions, status=status, actor=actor)


def _submit_job(engine, project, actor):
    """Queue a select job."""
    return library.submit_job(engine, "select", {"project": "ui", "strategy": "random", "budget": 2}, actor=actor)


def _upload(engine, settings, actor):
    """Upload one (bad) file: the access check comes before anything is stored."""
    return uploads.upload_and_queue(engine, settings, [("clip.mp4", b"not a video")], uploads.IngestRequest("ui"),
                                    actor=actor)


ALLOWED = {
    "label": {"annotator", "reviewer", "admin"},
    "submit": {"annotator", "reviewer", "admin"},
    "mark_reviewed": {"reviewer", "admin"},
    "add_class": {"annotator", "reviewer", "admin"},
    "review_queue": {"reviewer", "admin"},
    "submit_job": {"admin"},
    "cancel_job": {"admin"},
    "upload": {"admin"},
    "manage_users": {"admin"},
}


@pytest.mark.parametrize("role", ROLES)
def test_role_action_matrix(role: str, engine, settings, team) -> None:
    """Each (role, action): refused with AccessDenied and nothing written, or done."""
    actors, project, _ = team
    actor = actors[role]
    frame = _frame(engine, project.video_ids[0])
    job = library.submit_job(engine, "select", {"project": "ui", "strategy": "random", "budget": 1})
    calls = {
        "label": lambda: _save(engine, frame.id, "draft", actor),
        "submit": lambda: _save(engine, frame.id, "submitted", actor),
        "mark_reviewed": lambda: _save(engine, _frame(engine, project.video_ids[0], 1).id, "reviewed", actor),
        "add_class": lambda: labeling.add_label_class(engine, project.project_id, f"car-{role}", actor=actor),
        "review_queue": lambda: review.review_queue(engine, project.project_id, actor=actor),
        "submit_job": lambda: _submit_job(engine, project, actor),
        "cancel_job": lambda: library.cancel_job(engine, job.id, actor=actor),
        "upload": lambda: _upload(engine, settings, actor),
        "manage_users": lambda: auth.add_user(engine, f"new-{role}", "annotator", PASSWORD, actor=actor),
    }
    tables = (Annotation, Job, LabelClass, User, AuditEvent)
    for action, call in calls.items():
        before = {t.__tablename__: _count(engine, t) for t in tables}
        if role in ALLOWED[action]:
            call()
            continue
        with pytest.raises(AccessDenied):
            call()
        after = {t.__tablename__: _count(engine, t) for t in tables}
        assert after == before, f"{role} {action} wrote something although refused"
    with session_scope(engine) as session:
        authors = set(session.scalars(select(Annotation.author)))
    assert authors == {actor.name}, "the author of every version is the acting user"


@pytest.mark.parametrize("role", ["annotator", "reviewer"])
def test_ungranted_project_is_refused(role: str, engine, team) -> None:
    """Saving, adding classes, reviewing and reading figures on a project not granted to the user are refused."""
    actors, project, other = team
    actor = actors[role]
    auth.revoke(engine, actor.name, "ui")
    frame = _frame(engine, project.video_ids[0])
    with pytest.raises(AccessDenied, match="no access to this project"):
        _save(engine, frame.id, "draft", actor)
    with pytest.raises(AccessDenied):
        labeling.add_label_class(engine, other.id, "cls", actor=actor)
    with pytest.raises(AccessDenied):
        review.annotator_figures(engine, project.project_id, actor=actor)
    assert access.visible_projects(engine, actor) == []
    auth.grant(engine, actor.name, "ui")
    assert [p.name for p in access.visible_projects(engine, actor)] == ["ui"]
    assert {p.name for p in access.visible_projects(engine, actors["admin"])} == {"ui", "other"}
    assert _count(engine, Annotation) == 0


def test_ui_resolver_acts_for_the_signed_in_user(engine, team) -> None:
    """Inside the web UI a service called without an actor acts for the signed-in user; before sign-in, for nobody."""
    actors, project, _ = team
    frame = _frame(engine, project.video_ids[0])
    signed_in: list[Actor] = [access.ANONYMOUS]
    access.install_actor_resolver(lambda: signed_in[0])
    try:
        with pytest.raises(AccessDenied):
            labeling.save_frame_labels(engine, frame.id, _labels(engine, frame.id), {}, author="spoofed")
        with pytest.raises(AccessDenied):
            library.submit_job(engine, "select", {"project": "ui", "strategy": "random", "budget": 1})
        signed_in[0] = actors["annotator"]
        labeling.save_frame_labels(engine, frame.id, _labels(engine, frame.id), {}, author="spoofed")
        with pytest.raises(AccessDenied):
            library.submit_job(engine, "select", {"project": "ui", "strategy": "random", "budget": 1})
    finally:
        access.install_actor_resolver(None)
    with session_scope(engine) as session:
        assert set(session.scalars(select(Annotation.author))) == {"annotator1"}
