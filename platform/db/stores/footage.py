"""Videos and their frames."""
from __future__ import annotations

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from segloop.platform.db.entities import FrameInfo, NewVideo, VideoInfo, from_row
from segloop.platform.db.orm import Frame, Video
from segloop.platform.db.stores import NotFoundError


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


def get_video(session: Session, video_id: int) -> VideoInfo:
    """The video with this id, or NotFoundError."""
    row = session.get(Video, video_id)
    if row is None:
        raise NotFoundError(f"video {video_id} does not exist")
    return from_row(VideoInfo, row)


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
    row = session.get(Frame, frame_id)
    if row is None:
        raise NotFoundError(f"frame {frame_id} does not exist")
    return from_row(FrameInfo, row)


def count_frames(session: Session, project_id: int | None = None) -> int:
    """Number of stored frames in a project (or everywhere)."""
    query = select(func.count(Frame.id))
    if project_id is not None:
        query = query.join(Video, Frame.video_id == Video.id).where(Video.project_id == project_id)
    return int(session.scalar(query) or 0)


def project_frames(session: Session, project_id: int) -> list[FrameInfo]:
    """Every frame of a project ordered by video then index (for selectors, embedding, export)."""
    query = (
        select(Frame)
        .join(Video, Frame.video_id == Video.id)
        .where(Video.project_id == project_id)
        .order_by(Frame.video_id, Frame.index)
    )
    return [from_row(FrameInfo, r) for r in session.scalars(query)]
