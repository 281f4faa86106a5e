"""Videos and their frames."""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, delete, func, insert, null, or_, select
from sqlalchemy.orm import Session

from segloop.platform.core.errors import NotFoundError, ValidationError
from segloop.platform.db.entities import FrameFilter, FrameInfo, NewVideo, ProjectInfo, VideoInfo, from_row
from segloop.platform.db.orm import Frame, SelectionItem, Video
from segloop.platform.db.stores import SQL_CHUNK, get_row, id_chunks
from segloop.platform.db.stores.annotations import frame_status_condition
from segloop.platform.db.stores.tags import tag_condition


def find_video_by_hash(session: Session, project_id: int, sha256: str) -> VideoInfo | None:
    """The project's video with this content hash, if already ingested."""
    row = session.scalar(select(Video).where(Video.project_id == project_id, Video.sha256 == sha256))
    return None if row is None else from_row(VideoInfo, row)


def unique_video_name(session: Session, project_id: int, name: str) -> str:
    """`name`, or `name-2`, `name-3`, ... so that it is unique in the project."""
    taken = set(session.scalars(select(Video.name).where(Video.project_id == project_id, Video.name.like(f"{name}%"))))
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def add_video(session: Session, project_id: int, video: NewVideo) -> VideoInfo:
    """Insert a video and all its frames (bulk insert) in the caller's transaction."""
    row = Video(
        project_id=project_id,
        name=video.name,
        source_path=video.source_path,
        source_kind=video.source_kind,
        sha256=video.sha256,
        fps=video.fps,
        sample_fps=video.sample_fps,
        source_frame_count=video.source_frame_count,
        frame_count=len(video.frames),
        width=video.width,
        height=video.height,
        stored_width=video.stored_width,
        stored_height=video.stored_height,
        duration=video.duration,
        codec=video.codec,
        status="ready",
        storage_dir=video.storage_dir,
    )
    session.add(row)
    session.flush()
    if video.frames:
        session.execute(
            insert(Frame),
            [
                dict(
                    video_id=row.id,
                    index=f.index,
                    source_index=f.source_index,
                    timestamp=f.timestamp,
                    image_path=f.image_path,
                    thumb_path=f.thumb_path,
                    phash=f.phash,
                    dup_group=f.dup_group,
                )
                for f in video.frames
            ],
        )
    return from_row(VideoInfo, row)


def delete_video(session: Session, video_id: int) -> None:
    """Remove a video with its frames and everything on them (the database cascades)."""
    session.execute(delete(Video).where(Video.id == video_id))


def existing_storage_dirs(session: Session, storage_dirs: Sequence[str]) -> set[str]:
    """Which of the given storage folders (relative to the data dir) belong to a stored video."""
    wanted = list(storage_dirs)
    found: set[str] = set()
    for start in range(0, len(wanted), SQL_CHUNK):
        chunk = wanted[start:start + SQL_CHUNK]
        found.update(session.scalars(select(Video.storage_dir).where(Video.storage_dir.in_(chunk))))
    return found


def get_video(session: Session, video_id: int) -> VideoInfo:
    """The video with this id, or NotFoundError."""
    return from_row(VideoInfo, get_row(session, Video, video_id, "video"))


def get_video_by_name(session: Session, project_id: int, name: str) -> VideoInfo:
    """The project's video called `name`, or NotFoundError."""
    row = session.scalar(select(Video).where(Video.project_id == project_id, Video.name == name))
    if row is None:
        raise NotFoundError(f"video {name!r} does not exist in project {project_id}")
    return from_row(VideoInfo, row)


def list_videos(session: Session, project_id: int | None = None) -> list[VideoInfo]:
    """Videos of a project (or of all projects), oldest first."""
    query = select(Video).order_by(Video.id)
    if project_id is not None:
        query = query.where(Video.project_id == project_id)
    return [from_row(VideoInfo, r) for r in session.scalars(query)]


def list_frames(
    session: Session, video_id: int, offset: int = 0, limit: int | None = None
) -> list[FrameInfo]:
    """A page of a video's frames in temporal order."""
    query = select(Frame).where(Frame.video_id == video_id).order_by(Frame.index).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return [from_row(FrameInfo, r) for r in session.scalars(query)]


def get_frame(session: Session, frame_id: int) -> FrameInfo:
    """The frame with this id, or NotFoundError."""
    return from_row(FrameInfo, get_row(session, Frame, frame_id, "frame"))


def count_frames(session: Session, project_id: int | None = None) -> int:
    """Number of stored frames in a project (or everywhere)."""
    query = select(func.count(Frame.id))
    if project_id is not None:
        query = query.join(Video, Frame.video_id == Video.id).where(Video.project_id == project_id)
    return int(session.scalar(query) or 0)


def latest_timestamp(session: Session, project_id: int) -> float:
    """The largest frame timestamp (seconds) in a project; 0 when it has no frames."""
    query = (select(func.max(Frame.timestamp)).join(Video, Frame.video_id == Video.id)
             .where(Video.project_id == project_id))
    return float(session.scalar(query) or 0.0)


def project_frames(session: Session, project_id: int) -> list[FrameInfo]:
    """Every frame of a project ordered by video then index (for selectors, embedding, export)."""
    query = (
        select(Frame)
        .join(Video, Frame.video_id == Video.id)
        .where(Video.project_id == project_id)
        .order_by(Frame.video_id, Frame.index)
    )
    return [from_row(FrameInfo, r) for r in session.scalars(query)]


def frames_with_video_names(session: Session, frame_ids: Sequence[int]) -> dict[int, tuple[FrameInfo, str]]:
    """{frame id: (frame, video name)} for the given ids (missing ids left out)."""
    found = {}
    for chunk in id_chunks(frame_ids):
        query = select(Frame, Video.name).join(Video, Video.id == Frame.video_id).where(Frame.id.in_(chunk))
        for frame, name in session.execute(query):
            found[frame.id] = (from_row(FrameInfo, frame), name)
    return found


def frames_outside_project(session: Session, project_id: int, frame_ids: Sequence[int]) -> list[int]:
    """The given frame ids that are not frames of the project (missing or of another project), sorted."""
    inside: set[int] = set()
    for chunk in id_chunks(frame_ids):
        inside.update(session.scalars(select(Frame.id).join(Video, Video.id == Frame.video_id)
                                      .where(Video.project_id == project_id, Frame.id.in_(chunk))))
    return sorted({int(f) for f in frame_ids} - inside)


def require_project_frames(session: Session, project: ProjectInfo, frame_ids: Sequence[int]) -> None:
    """ValidationError naming the frames that are not frames of the project (missing or of another project)."""
    outside = frames_outside_project(session, project.id, frame_ids)
    if outside:
        shown = ", ".join(map(str, outside[:10])) + (" …" if len(outside) > 10 else "")
        raise ValidationError(f"frame ids: {len(outside)} frame(s) are not frames of project {project.name!r}: "
                              f"{shown}")


def duplicate_groups(session: Session, video_id: int, limit: int = 500) -> list[tuple[int, int]]:
    """(group, frame count) of a video's near-duplicate groups that hold more than one frame, largest first."""
    size = func.count(Frame.id)
    query = (select(Frame.dup_group, size).where(Frame.video_id == video_id).group_by(Frame.dup_group)
             .having(size > 1).order_by(size.desc(), Frame.dup_group).limit(limit))
    return [(int(g), int(n)) for g, n in session.execute(query)]


# ---------------------------------------------------------------- filtered frames (library)


def _filtered_query(flt: FrameFilter):
    """SELECT (Frame, video name) matching the filter, in video then frame order."""
    query = (select(Frame, Video.name).join(Video, Video.id == Frame.video_id)
             .where(Video.project_id == flt.project_id).order_by(Frame.video_id, Frame.index))
    if flt.video_id is not None:
        query = query.where(Frame.video_id == flt.video_id)
    if flt.dup_group is not None:
        query = query.where(Frame.dup_group == flt.dup_group)
    if flt.label_status != "any":
        query = query.where(frame_status_condition(flt.label_status))
    if flt.tag_id is not None:
        query = query.where(tag_condition(flt.tag_id))
    return query


def count_filtered_frames(session: Session, flt: FrameFilter) -> int:
    """How many frames match the filter."""
    return int(session.scalar(_filtered_query(flt).order_by(None).with_only_columns(func.count(Frame.id))) or 0)


def filtered_frames(session: Session, flt: FrameFilter, offset: int, limit: int) -> list[tuple[FrameInfo, str]]:
    """(frame, video name) of the frames matching the filter, in video then frame order, from `offset`."""
    rows = session.execute(_filtered_query(flt).offset(max(offset, 0)).limit(limit))
    return [(from_row(FrameInfo, frame), name) for frame, name in rows]


# ---------------------------------------------------------------- the labeling queue


def _queue_query(project_id: int, video_id: int | None, selection_id: int | None, include_done: bool):
    """SELECT (Frame, video name, rank) of the queue in queue order."""
    if selection_id is not None:
        query = (select(Frame, Video.name, SelectionItem.rank)
                 .join(SelectionItem, SelectionItem.frame_id == Frame.id)
                 .join(Video, Video.id == Frame.video_id)
                 .where(SelectionItem.selection_id == selection_id, SelectionItem.status != "rejected",
                        Video.project_id == project_id)
                 .order_by(SelectionItem.rank))
    else:
        query = (select(Frame, Video.name, null())
                 .join(Video, Video.id == Frame.video_id)
                 .where(Video.project_id == project_id)
                 .order_by(Frame.video_id, Frame.index))
        if video_id is not None:
            query = query.where(Frame.video_id == video_id)
    if not include_done:
        query = query.where(or_(frame_status_condition("unlabeled"), frame_status_condition("draft")))
    return query


def queue_frames(session: Session, project_id: int, *, video_id: int | None = None, selection_id: int | None = None,
                 include_done: bool = False, offset: int = 0, limit: int = 50
                 ) -> tuple[list[tuple[FrameInfo, str, int | None]], int]:
    """(page of (frame, video name, pick rank), total) of the labeling queue: a selection run's picks (not rejected)
    in rank order, else a video's (or the project's) frames in order; without `include_done`, only frames that
    are unlabeled or have a draft."""
    query = _queue_query(project_id, video_id, selection_id, include_done)
    total = int(session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0)
    rows = session.execute(query.offset(max(offset, 0)).limit(limit))
    return [(from_row(FrameInfo, frame), name, rank) for frame, name, rank in rows], total


def queue_neighbour(session: Session, project_id: int, frame_id: int, step: int, *, video_id: int | None = None,
                    selection_id: int | None = None, include_done: bool = False) -> FrameInfo | None:
    """The queue frame right after (step=+1) or before (step=-1) `frame_id` in queue order, if any."""
    query = _queue_query(project_id, video_id, selection_id, include_done).order_by(None)
    current = get_frame(session, frame_id)
    if selection_id is not None:
        rank = session.scalar(select(SelectionItem.rank).where(
            SelectionItem.selection_id == selection_id, SelectionItem.frame_id == frame_id))
        if rank is None:
            return None
        query = query.where(SelectionItem.rank > rank if step > 0 else SelectionItem.rank < rank)
        query = query.order_by(SelectionItem.rank if step > 0 else SelectionItem.rank.desc())
    else:
        after = or_(Frame.video_id > current.video_id,
                    and_(Frame.video_id == current.video_id, Frame.index > current.index))
        before = or_(Frame.video_id < current.video_id,
                     and_(Frame.video_id == current.video_id, Frame.index < current.index))
        query = query.where(after if step > 0 else before)
        query = query.order_by(*((Frame.video_id, Frame.index) if step > 0
                                 else (Frame.video_id.desc(), Frame.index.desc())))
    row = session.execute(query.limit(1)).first()
    return None if row is None else from_row(FrameInfo, row[0])
