"""Frame tags: user-named tags of a project ("night", "blurry") and the frames carrying them."""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from segloop.platform.db.entities import FrameTagInfo, from_row
from segloop.platform.db.orm import Frame, FrameTag, FrameTagItem
from segloop.platform.db.stores import id_chunks


def _insert_ignoring_duplicates(session: Session, model: type):
    """An INSERT of `model` that skips rows clashing with a unique key (ON CONFLICT DO NOTHING), per dialect."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(model).on_conflict_do_nothing()


def find_tag(session: Session, project_id: int, name: str) -> FrameTagInfo | None:
    """The project's tag of that name, or None."""
    row = session.scalar(select(FrameTag).where(FrameTag.project_id == project_id, FrameTag.name == name))
    return None if row is None else from_row(FrameTagInfo, row)


def get_or_create_tag(session: Session, project_id: int, name: str) -> FrameTagInfo:
    """The project's tag of that name, created when missing (safe when two sessions create it at once)."""
    session.execute(_insert_ignoring_duplicates(session, FrameTag).values(project_id=project_id, name=name))
    tag = find_tag(session, project_id, name)
    assert tag is not None  # just inserted or already there
    return tag


def delete_tag(session: Session, tag_id: int) -> None:
    """Remove a tag and its frame links."""
    session.execute(delete(FrameTagItem).where(FrameTagItem.tag_id == tag_id))
    session.execute(delete(FrameTag).where(FrameTag.id == tag_id))


def add_frames(session: Session, tag_id: int, frame_ids: Sequence[int], actor: str) -> int:
    """Attach the tag to the frames (frames already carrying it are left as they are); returns how many were new."""
    before = count_frames(session, tag_id)
    for chunk in id_chunks(sorted(set(frame_ids))):
        session.execute(_insert_ignoring_duplicates(session, FrameTagItem),
                        [{"tag_id": tag_id, "frame_id": f, "actor": actor[:120]} for f in chunk])
    return count_frames(session, tag_id) - before


def remove_frames(session: Session, tag_id: int, frame_ids: Sequence[int]) -> int:
    """Detach the tag from the frames; returns how many carried it."""
    removed = 0
    for chunk in id_chunks(sorted(set(frame_ids))):
        result = session.execute(delete(FrameTagItem).where(FrameTagItem.tag_id == tag_id,
                                                            FrameTagItem.frame_id.in_(chunk)))
        removed += result.rowcount or 0
    return removed


def count_frames(session: Session, tag_id: int) -> int:
    """How many frames carry the tag."""
    return int(session.scalar(select(func.count()).where(FrameTagItem.tag_id == tag_id)) or 0)


def tags_with_counts(session: Session, project_id: int) -> list[tuple[FrameTagInfo, int]]:
    """(tag, frames carrying it) of every tag of the project, by name."""
    count = func.count(FrameTagItem.frame_id)
    rows = session.execute(select(FrameTag, count).outerjoin(FrameTagItem, FrameTagItem.tag_id == FrameTag.id)
                           .where(FrameTag.project_id == project_id).group_by(FrameTag.id)
                           .order_by(FrameTag.name))
    return [(from_row(FrameTagInfo, tag), int(n)) for tag, n in rows]


def tagged_frame_ids(session: Session, tag_id: int) -> list[int]:
    """Ids of the frames carrying the tag, in video then frame order."""
    query = (select(Frame.id).join(FrameTagItem, FrameTagItem.frame_id == Frame.id)
             .where(FrameTagItem.tag_id == tag_id).order_by(Frame.video_id, Frame.index))
    return [int(i) for i in session.scalars(query)]


def frames_carrying(session: Session, tag_id: int, frame_ids: Sequence[int]) -> set[int]:
    """Which of the given frames carry the tag."""
    found: set[int] = set()
    for chunk in id_chunks(frame_ids):
        found.update(session.scalars(select(FrameTagItem.frame_id).where(FrameTagItem.tag_id == tag_id,
                                                                         FrameTagItem.frame_id.in_(chunk))))
    return found


def tag_condition(tag_id: int):
    """A WHERE clause on Frame: the frame carries the tag (for filtered frame queries)."""
    return Frame.id.in_(select(FrameTagItem.frame_id).where(FrameTagItem.tag_id == tag_id))
