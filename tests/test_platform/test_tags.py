"""Frame tags on SQLite and PostgreSQL: the store (no-op re-tagging, counts, cascades), the services (name rules,
frames of another project refused, access by role and grant, audit), the Library's tag filter and the CLI."""
from __future__ import annotations

import pytest
from sqlalchemy import delete, func, select

from segloop.platform.core.errors import AccessDenied, NotFoundError, ValidationError
from segloop.platform.db.engine import session_scope
from segloop.platform.db.entities import FrameFilter
from segloop.platform.db.orm import AuditEvent, FrameTag, FrameTagItem, Project, Video
from segloop.platform.db.stores import footage, projects
from segloop.platform.db.stores import tags as tag_store
from segloop.platform.services import auth, library, tags
from segloop.platform.services.access import Actor


def _frame_ids(engine, video_id: int) -> list[int]:
    """Ids of a video's frames in frame order."""
    with session_scope(engine) as session:
        return [f.id for f in footage.list_frames(session, video_id)]


def _rows(engine, model) -> int:
    """Rows in a table."""
    with session_scope(engine) as session:
        return int(session.scalar(select(func.count()).select_from(model)))


def test_store_tags_frames_once_counts_them_and_cascades(engine, footage_project) -> None:
    """Adding the same frames twice adds them once; counts per tag; deleting a video drops its frames' links,
    deleting the project drops its tags."""
    first, second = (_frame_ids(engine, v) for v in footage_project.video_ids)
    with session_scope(engine) as session:
        night = tag_store.get_or_create_tag(session, footage_project.project_id, "night")
        assert tag_store.get_or_create_tag(session, footage_project.project_id, "night") == night
        blurry = tag_store.get_or_create_tag(session, footage_project.project_id, "blurry")
        assert tag_store.add_frames(session, night.id, first[:5] + second[:2], "ann") == 7
        assert tag_store.add_frames(session, night.id, first[:6], "ann") == 1
        assert tag_store.add_frames(session, blurry.id, second[3:4], "ann") == 1
    with session_scope(engine) as session:
        counted = [(t.name, n) for t, n in tag_store.tags_with_counts(session, footage_project.project_id)]
        assert counted == [("blurry", 1), ("night", 8)]
        assert tag_store.tagged_frame_ids(session, night.id) == first[:6] + second[:2]
        assert tag_store.frames_carrying(session, night.id, first[4:8]) == set(first[4:6])
        assert footage.frames_outside_project(session, footage_project.project_id, [first[0], 10**9]) == [10**9]
        assert tag_store.remove_frames(session, night.id, first[:2] + first[:2]) == 2
    with session_scope(engine) as session:
        session.delete(session.get(Video, footage_project.video_ids[1]))
    with session_scope(engine) as session:
        assert tag_store.tagged_frame_ids(session, night.id) == first[2:6]
        assert tag_store.count_frames(session, blurry.id) == 0
    with session_scope(engine) as session:
        session.execute(delete(Project).where(Project.id == footage_project.project_id))
    assert _rows(engine, FrameTag) == 0 and _rows(engine, FrameTagItem) == 0


def test_tag_service_validates_names_and_frames_and_audits(engine, footage_project) -> None:
    """Bad tag names are refused naming the field; frames of another project or non-ids are refused and nothing
    is written; re-tagging is a no-op (no new row, no audit); untag and listing work by name."""
    frames = _frame_ids(engine, footage_project.video_ids[0])
    for bad, reason in (("", "must not be empty"), ("  ", "must not be empty"), ("a/b", "path separator"),
                        (".hidden", "starts with a dot"), ("x" * 61, "at most 60"), ("bad\u200bname", "invisible")):
        with pytest.raises(ValidationError, match=f"tag name: .*{reason}"):
            tags.tag_frames(engine, footage_project.project_id, bad, frames[:2])
    with pytest.raises(ValidationError, match="frame ids: no frame chosen"):
        tags.tag_frames(engine, "ui", "night", [])
    with pytest.raises(ValidationError, match="frame ids: 'x' is not a frame id"):
        tags.tag_frames(engine, "ui", "night", [frames[0], "x"])
    with session_scope(engine) as session:
        other = projects.get_or_create_project(session, "other")
    with pytest.raises(ValidationError, match="frame ids: 2 frame\\(s\\) are not frames of project 'other'"):
        tags.tag_frames(engine, other.id, "night", frames[:2])
    with pytest.raises(NotFoundError, match="project 'nope' does not exist"):
        tags.tag_frames(engine, "nope", "night", frames[:2])
    assert _rows(engine, FrameTag) == 0 and _rows(engine, FrameTagItem) == 0 and _rows(engine, AuditEvent) == 0

    done = tags.tag_frames(engine, "ui", "  night ", frames[:4])
    assert (done.tag.name, done.changed, done.unchanged) == ("night", 4, 0)
    again = tags.tag_frames(engine, footage_project.project_id, "night", frames[2:6])
    assert (again.tag.id, again.changed, again.unchanged) == (done.tag.id, 2, 2)
    assert tags.tag_frames(engine, "ui", "night", frames[:6]).changed == 0
    assert _rows(engine, FrameTagItem) == 6 and _rows(engine, AuditEvent) == 2
    assert [(s.tag.name, s.frames) for s in tags.project_tags(engine, "ui")] == [("night", 6)]
    assert tags.tagged_frames(engine, "ui", "night") == frames[:6]
    removed = tags.untag_frames(engine, "ui", "night", frames[:3] + frames[10:11])
    assert (removed.changed, removed.unchanged) == (3, 1)
    assert tags.tagged_frames(engine, "ui", "night") == frames[3:6]
    with pytest.raises(NotFoundError, match="tag 'day' does not exist in project 'ui'"):
        tags.untag_frames(engine, "ui", "day", frames[:1])
    with pytest.raises(ValidationError, match="frame ids: 1 frame\\(s\\) are not frames of project 'ui': 999999"):
        tags.untag_frames(engine, "ui", "night", [frames[3], 999999])  # it said the frame 'did not carry it'
    assert tags.tagged_frames(engine, "ui", "night") == frames[3:6]
    with session_scope(engine) as session:
        actions = [(e.action, e.detail) for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert actions[0] == ("tag_frames", {"tag": "night", "added": 4, "frames": 4})
    assert actions[-1] == ("untag_frames", {"tag": "night", "removed": 3, "frames": 4})


def test_a_name_typed_composed_or_decomposed_is_one_name(engine, footage_project) -> None:
    """'café' typed as é or as e + combining accent made two tags that look alike; a 60-letter decomposed name was
    refused as 120 characters. Names are kept composed (NFC)."""
    frames = _frame_ids(engine, footage_project.video_ids[0])
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    first = tags.tag_frames(engine, "ui", composed, frames[:1])
    second = tags.tag_frames(engine, "ui", decomposed, frames[:2])
    assert first.tag.id == second.tag.id and (second.changed, second.unchanged) == (1, 1)
    assert tags.check_tag_name("e\u0301" * 60) == "\u00e9" * 60


def test_annotator_tags_a_granted_project_only(engine, footage_project) -> None:
    """An annotator may tag frames of a granted project (and is audited as the actor), not of another project;
    a signed-out visitor may not tag at all."""
    user = auth.add_user(engine, "ann1", "annotator", "Tag-Access-Pass-1")
    auth.grant(engine, "ann1", "ui")
    annotator = Actor(user.name, "annotator", user.id)
    frames = _frame_ids(engine, footage_project.video_ids[0])
    assert tags.tag_frames(engine, "ui", "occluded", frames[:3], actor=annotator).changed == 3
    with session_scope(engine) as session:
        other = projects.get_or_create_project(session, "other")
        outsider = projects.get_or_create_project(session, "outsider")
    assert other.id != outsider.id
    with pytest.raises(AccessDenied, match="ann1 has no access to this project"):
        tags.tag_frames(engine, other.id, "occluded", frames[:3], actor=annotator)
    with pytest.raises(AccessDenied, match="ann1 has no access to this project"):
        tags.project_tags(engine, "other", actor=annotator)
    with pytest.raises(AccessDenied, match="you are not signed in"):
        tags.tag_frames(engine, "ui", "occluded", frames[:3], actor=Actor("anonymous", "none"))
    with session_scope(engine) as session:
        items = session.scalars(select(FrameTagItem).order_by(FrameTagItem.frame_id)).all()
        assert [i.actor for i in items] == ["ann1"] * 3
        assert session.scalar(select(AuditEvent.actor).where(AuditEvent.action == "tag_frames")) == "ann1"


def test_library_filters_frames_by_tag(engine, footage_project) -> None:
    """The Library's frame filter with a tag lists and counts only the tagged frames, combined with the others."""
    first, second = (_frame_ids(engine, v) for v in footage_project.video_ids)
    night = tags.tag_frames(engine, "ui", "night", [second[7], first[1], first[9]]).tag
    tagged = FrameFilter(project_id=footage_project.project_id, tag_id=night.id)
    assert library.count_filtered_frames(engine, tagged) == 3
    assert [f.frame.id for f in library.browse_frames(engine, tagged, 0, 2)] == [first[1], first[9]]
    assert [f.frame.id for f in library.browse_frames(engine, tagged, 1, 2)] == [second[7]]
    one_video = FrameFilter(project_id=footage_project.project_id, video_id=footage_project.video_ids[1],
                            tag_id=night.id)
    assert [f.frame.id for f in library.browse_frames(engine, one_video, 0, 10)] == [second[7]]
    labeled = FrameFilter(project_id=footage_project.project_id, tag_id=night.id, label_status="labeled")
    assert library.count_filtered_frames(engine, labeled) == 0


def test_cli_tags_add_list_and_refusals(cli, engine, footage_project) -> None:
    """`segloop tags add` tags frames by id (again: nothing new), `tags list` prints counts, `tags remove` untags;
    a bad name exits 1 naming the field, without a traceback."""
    frames = _frame_ids(engine, footage_project.video_ids[0])
    result = cli("tags", "add", "--project", "ui", "--tag", "night", *map(str, frames[:3]))
    assert result.exit_code == 0 and "3 frame(s) tagged 'night'" in result.output
    assert "0 frame(s) tagged 'night' (3 already were)" in cli("tags", "add", "--project", "ui", "--tag", "night",
                                                              *map(str, frames[:3])).output
    listed = cli("tags", "list", "--project", "ui").output
    assert "night" in listed and "3" in listed
    assert "1 frame(s) untagged 'night'" in cli("tags", "remove", "--project", "ui", "--tag", "night",
                                               str(frames[0])).output
    bad = cli("tags", "add", "--project", "ui", "--tag", "a/b", str(frames[0]))
    assert bad.exit_code == 1 and "tag name: 'a/b' contains a path separator" in bad.output
    assert "Traceback" not in bad.output
    assert tags.tagged_frames(engine, "ui", "night") == frames[1:3]


def test_queueing_frames_from_the_map_needs_the_label_grant(engine, footage_project) -> None:
    """Frames gathered on the Explore map are queued by an annotator of the project, not by one of another."""
    from segloop.platform.services import explore

    user = auth.add_user(engine, "ann2", "annotator", "Queue-Access-Pass-2")
    auth.grant(engine, "ann2", "ui")
    annotator = Actor(user.name, "annotator", user.id)
    frames = _frame_ids(engine, footage_project.video_ids[0])
    assert explore.queue_frames(engine, footage_project.project_id, frames[:2], "lasso", actor=annotator).budget == 2
    with session_scope(engine) as session:
        other = projects.get_or_create_project(session, "elsewhere")
    with pytest.raises(AccessDenied, match="ann2 has no access to this project"):
        explore.queue_frames(engine, other.id, frames[:2], "lasso", actor=annotator)
