"""Frame tags: a user-named tag ("night", "blurry", "occluded") attached to many frames of a project.

Tagging and untagging need the right to label the project, listing needs the right to open it; every change is
audited. Tagging a frame that already carries the tag changes nothing.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine

from segloop.platform.core.errors import NotFoundError, ValidationError
from segloop.platform.core.names import check_name
from segloop.platform.db.engine import session_scope
from segloop.platform.db.entities import FrameTagInfo, ProjectInfo
from segloop.platform.db.stores import MAX_ID, MIN_ID, audit, footage, projects
from segloop.platform.db.stores import tags as tag_store
from segloop.platform.services import access
from segloop.platform.services.access import Actor
from segloop.platform.services.auth import actor_name

TAG_NAME_MAX = 60
MAX_FRAMES_PER_CALL = 100_000


@dataclass(frozen=True)
class TagSummary:
    """A tag of a project and how many frames carry it."""

    tag: FrameTagInfo
    frames: int


@dataclass(frozen=True)
class TagChange:
    """What tagging or untagging did: the tag, how many frames changed, how many were already as asked."""

    tag: FrameTagInfo
    changed: int
    unchanged: int


def check_tag_name(value: object) -> str:
    """A tag name: the rules of every name people type (see `core.names.check_name`), at most 60 characters."""
    return check_name("tag name", value, TAG_NAME_MAX)


def check_frame_ids(frame_ids: Sequence[object]) -> list[int]:
    """The frame ids as distinct ints in the given order, or ValidationError naming the field."""
    if isinstance(frame_ids, (str, bytes)) or not isinstance(frame_ids, Sequence):
        raise ValidationError("frame ids: expected a list of frame ids")
    if not frame_ids:
        raise ValidationError("frame ids: no frame chosen (select some frames first)")
    if len(frame_ids) > MAX_FRAMES_PER_CALL:
        raise ValidationError(f"frame ids: {len(frame_ids)} frames, at most {MAX_FRAMES_PER_CALL} at once")
    ids: dict[int, None] = {}
    for value in frame_ids:
        if isinstance(value, bool) or not isinstance(value, int) or not MIN_ID <= value <= MAX_ID:
            raise ValidationError(f"frame ids: {value!r} is not a frame id (a whole number)")
        ids[int(value)] = None
    return list(ids)


def _project(session, project: int | str) -> ProjectInfo:
    """The project by id or name, or NotFoundError."""
    if isinstance(project, str):
        return projects.get_project(session, project)
    return projects.get_project_by_id(session, project)


def tag_frames(engine: Engine, project: int | str, name: str, frame_ids: Sequence[int], *,
               actor: Actor | None = None, client: str = "") -> TagChange:
    """Attach the tag `name` (created if new) to frames of the project, audited; frames already carrying it stay
    as they are (tagging only those writes nothing). Nothing is written when a name or a frame is refused."""
    return _change(engine, project, name, frame_ids, actor, client, add=True)


def untag_frames(engine: Engine, project: int | str, name: str, frame_ids: Sequence[int], *,
                 actor: Actor | None = None, client: str = "") -> TagChange:
    """Detach the tag `name` from frames of the project, audited (frames without it stay as they are)."""
    return _change(engine, project, name, frame_ids, actor, client, add=False)


def _change(engine: Engine, project: int | str, name: str, frame_ids: Sequence[int], actor: Actor | None,
            client: str, *, add: bool) -> TagChange:
    """Tag (add) or untag frames of the project after the checks; audited when something changed."""
    name = check_tag_name(name)
    ids = check_frame_ids(frame_ids)
    access.require(engine, actor, "label", project)
    who = actor_name(actor)
    with session_scope(engine) as session:
        info = _project(session, project)
        footage.require_project_frames(session, info, ids)  # also when untagging: another project's frames
        if add:
            tag = tag_store.get_or_create_tag(session, info.id, name)
            changed = tag_store.add_frames(session, tag.id, ids, who)
        else:
            tag = _existing_tag(session, info, name)
            changed = tag_store.remove_frames(session, tag.id, ids)
        if changed:
            action, count = ("tag_frames", "added") if add else ("untag_frames", "removed")
            audit.record(session, who, action, f"project {info.name}", client,
                         {"tag": tag.name, count: changed, "frames": len(ids)})
    return TagChange(tag, changed, len(ids) - changed)


def _existing_tag(session, project: ProjectInfo, name: str) -> FrameTagInfo:
    """The project's tag of that name, or NotFoundError."""
    tag = tag_store.find_tag(session, project.id, name)
    if tag is None:
        raise NotFoundError(f"tag {name!r} does not exist in project {project.name!r}")
    return tag


def project_tags(engine: Engine, project: int | str, *, actor: Actor | None = None) -> list[TagSummary]:
    """The project's tags by name, each with how many frames carry it."""
    access.require(engine, actor, "view", project)
    with session_scope(engine) as session:
        info = _project(session, project)
        return [TagSummary(tag, count) for tag, count in tag_store.tags_with_counts(session, info.id)]


def tagged_frames(engine: Engine, project: int | str, name: str, *, actor: Actor | None = None) -> list[int]:
    """Ids of the project's frames carrying the tag `name`, in video then frame order."""
    access.require(engine, actor, "view", project)
    with session_scope(engine) as session:
        info = _project(session, project)
        return tag_store.tagged_frame_ids(session, _existing_tag(session, info, check_tag_name(name)).id)


def frames_with_tag(engine: Engine, tag_id: int, frame_ids: Sequence[int]) -> set[int]:
    """Which of the given frames carry the tag (for colouring a map)."""
    with session_scope(engine) as session:
        return tag_store.frames_carrying(session, tag_id, frame_ids)
