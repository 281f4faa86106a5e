"""Read services for browsing footage (used by the web UI and the CLI): paged, never loading everything."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, and_, exists, func, select
from sqlalchemy.orm import Session, aliased

from segloop.platform.db.engine import session_scope
from segloop.platform.db.entities import AnnotationInfo, FrameInfo, JobInfo, ProjectInfo, VideoInfo, from_row
from segloop.platform.db.orm import Annotation, Frame, Video
from segloop.platform.db.stores import annotations as annotation_store
from segloop.platform.db.stores import footage, projects
from segloop.platform.db.stores import jobs as job_store


@dataclass(frozen=True)
class ProjectSummary:
    """A project with its counts."""

    project: ProjectInfo
    videos: int
    frames: int
    annotated_frames: int


def project_summaries(engine: Engine) -> list[ProjectSummary]:
    """Every project with video, frame and annotated-frame counts."""
    with session_scope(engine) as session:
        return [
            ProjectSummary(p, len(footage.list_videos(session, p.id)), footage.count_frames(session, p.id),
                           annotation_store.count_annotated_frames(session, p.id))
            for p in projects.list_projects(session)
        ]


def project_videos(engine: Engine, project_id: int) -> list[VideoInfo]:
    """The videos of a project."""
    with session_scope(engine) as session:
        return footage.list_videos(session, project_id)




def recent_jobs(engine: Engine, limit: int = 50) -> list[JobInfo]:
    """The newest jobs."""
    with session_scope(engine) as session:
        return job_store.list_jobs(session, limit=limit)


# ---------------------------------------------------------------- label status of frames

LABEL_STATUSES = ("unlabeled", "draft", "submitted", "reviewed")
LABEL_FILTERS = ("any", "unlabeled", "labeled", "draft", "submitted", "reviewed")


class LibraryError(ValueError):
    """A browse request the library cannot answer; the message names the field and why."""


def _latest_with_status(status: str):
    """EXISTS: the frame has an object whose newest version has `status`."""
    newer = aliased(Annotation)
    latest = aliased(Annotation)
    return exists(
        select(latest.id).where(
            latest.frame_id == Frame.id,
            latest.status == status,
            ~exists(select(newer.id).where(newer.frame_id == latest.frame_id, newer.object_id == latest.object_id,
                                           newer.version > latest.version)),
        )
    )


def frame_status_condition(status: str):
    """SQL condition on `Frame` for a label filter: unlabeled, labeled, draft, submitted or reviewed.

    A frame is draft when any object's newest mask is a draft, submitted when none is a draft and
    one is submitted, reviewed when all are reviewed, unlabeled when it has no mask at all.
    """
    has_any = exists(select(Annotation.id).where(Annotation.frame_id == Frame.id))
    if status == "unlabeled":
        return ~has_any
    if status == "labeled":
        return has_any
    if status == "draft":
        return _latest_with_status("draft")
    if status == "submitted":
        return and_(~_latest_with_status("draft"), _latest_with_status("submitted"))
    if status == "reviewed":
        return and_(has_any, ~_latest_with_status("draft"), ~_latest_with_status("submitted"))
    raise LibraryError(f"label status: {status!r} is not one of {', '.join(LABEL_FILTERS)}")


def status_from_annotations(statuses: Sequence[str]) -> str:
    """The label status of a frame from its objects' newest statuses (same rules as the SQL filter)."""
    if not statuses:
        return "unlabeled"
    if "draft" in statuses:
        return "draft"
    if "submitted" in statuses:
        return "submitted"
    return "reviewed"


def frame_statuses(session: Session, frame_ids: Sequence[int]) -> dict[int, str]:
    """The label status of each given frame (one query for a page of frames)."""
    found: dict[int, list[str]] = {int(f): [] for f in frame_ids}
    if not found:
        return {}
    newer = aliased(Annotation)
    rows = session.execute(
        select(Annotation.frame_id, Annotation.status).where(
            Annotation.frame_id.in_(list(found)),
            ~exists(select(newer.id).where(newer.frame_id == Annotation.frame_id,
                                           newer.object_id == Annotation.object_id, newer.version > Annotation.version)),
        )
    )
    for frame_id, status in rows:
        found[frame_id].append(status)
    return {frame_id: status_from_annotations(statuses) for frame_id, statuses in found.items()}


# ---------------------------------------------------------------- browsing frames


@dataclass(frozen=True)
class FrameFilter:
    """Which frames of a project to browse: optionally one video, one label status, one near-duplicate group."""

    project_id: int
    video_id: int | None = None
    label_status: str = "any"
    dup_group: int | None = None


@dataclass(frozen=True)
class LibraryFrame:
    """A frame as listed in the library: with its video's name and its label status."""

    frame: FrameInfo
    video_name: str
    status: str


def _filtered_frames(flt: FrameFilter):
    """SELECT (Frame, video name) matching the filter, in video then frame order."""
    if flt.label_status not in LABEL_FILTERS:
        raise LibraryError(f"label status: {flt.label_status!r} is not one of {', '.join(LABEL_FILTERS)}")
    if flt.dup_group is not None and flt.video_id is None:
        raise LibraryError("near-duplicate group: choose a video first (groups are numbered per video)")
    query = (select(Frame, Video.name).join(Video, Video.id == Frame.video_id)
             .where(Video.project_id == flt.project_id).order_by(Frame.video_id, Frame.index))
    if flt.video_id is not None:
        query = query.where(Frame.video_id == flt.video_id)
    if flt.dup_group is not None:
        query = query.where(Frame.dup_group == flt.dup_group)
    if flt.label_status != "any":
        query = query.where(frame_status_condition(flt.label_status))
    return query


def count_filtered_frames(engine: Engine, flt: FrameFilter) -> int:
    """How many frames match the filter."""
    query = _filtered_frames(flt).order_by(None).with_only_columns(func.count(Frame.id))
    with session_scope(engine) as session:
        return int(session.scalar(query) or 0)


def browse_frames(engine: Engine, flt: FrameFilter, page: int, page_size: int) -> list[LibraryFrame]:
    """One page (0-based) of the frames matching the filter, with video names and label statuses."""
    if page < 0 or page_size < 1:
        raise LibraryError(f"page {page} of size {page_size}: page must be >= 0 and size >= 1")
    with session_scope(engine) as session:
        rows = session.execute(_filtered_frames(flt).offset(page * page_size).limit(page_size)).all()
        frames = [from_row(FrameInfo, row[0]) for row in rows]
        statuses = frame_statuses(session, [f.id for f in frames])
    return [LibraryFrame(frame, row[1], statuses[frame.id]) for frame, row in zip(frames, rows)]


def duplicate_groups(engine: Engine, video_id: int, limit: int = 500) -> list[tuple[int, int]]:
    """(group, frame count) of a video's near-duplicate groups that hold more than one frame, largest first."""
    size = func.count(Frame.id)
    query = (select(Frame.dup_group, size).where(Frame.video_id == video_id).group_by(Frame.dup_group)
             .having(size > 1).order_by(size.desc(), Frame.dup_group).limit(limit))
    with session_scope(engine) as session:
        return [(int(g), int(n)) for g, n in session.execute(query)]


@dataclass(frozen=True)
class FrameDetail:
    """A frame with its video, its newest masks and their label status."""

    frame: FrameInfo
    video: VideoInfo
    annotations: list[AnnotationInfo]
    status: str


def frame_detail(engine: Engine, frame_id: int) -> FrameDetail:
    """Everything the frame viewer shows about one frame."""
    with session_scope(engine) as session:
        frame = footage.get_frame(session, frame_id)
        video = footage.get_video(session, frame.video_id)
        latest = annotation_store.latest_annotations(session, frame_id)
    return FrameDetail(frame, video, latest, status_from_annotations([a.status for a in latest]))


def video_summaries(engine: Engine, project_id: int) -> list[dict]:
    """Per video of a project: name, kind, frames, size, fps, annotated frames (one grouped query each)."""
    with session_scope(engine) as session:
        annotated = dict(session.execute(
            select(Frame.video_id, func.count(func.distinct(Annotation.frame_id)))
            .join(Annotation, Annotation.frame_id == Frame.id)
            .join(Video, Video.id == Frame.video_id)
            .where(Video.project_id == project_id).group_by(Frame.video_id)
        ).all())
        videos = footage.list_videos(session, project_id)
    return [{"video": v.name, "kind": v.source_kind, "frames": v.frame_count,
             "size": f"{v.stored_width}x{v.stored_height}", "fps": round(v.sample_fps or v.fps or 0.0, 2),
             "annotated frames": int(annotated.get(v.id, 0))} for v in videos]


# ---------------------------------------------------------------- jobs


def job_log_tail(data_dir: Path, job: JobInfo, max_lines: int = 40, max_bytes: int = 64 * 1024) -> str:
    """The last lines of a job's log file ('' when it has none yet); reads at most `max_bytes` from the end."""
    if not job.log_path:
        return ""
    path = Path(job.log_path)
    if not path.is_absolute():
        path = Path(data_dir) / path
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(size - max_bytes, 0))
            text = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    lines = text.splitlines()
    if size > max_bytes and lines:
        lines = lines[1:]
    return "\n".join(lines[-max_lines:])


def get_job(engine: Engine, job_id: int) -> JobInfo:
    """One job."""
    with session_scope(engine) as session:
        return job_store.get_job(session, job_id)


def jobs_by_id(engine: Engine, job_ids: Sequence[int]) -> list[JobInfo]:
    """The given jobs (missing ids are left out), in the given order."""
    found = []
    with session_scope(engine) as session:
        for job_id in job_ids:
            try:
                found.append(job_store.get_job(session, job_id))
            except LookupError:
                continue
    return found


def cancel_job(engine: Engine, job_id: int) -> JobInfo:
    """Cancel a queued job now, or ask the worker of a running one to stop."""
    with session_scope(engine) as session:
        return job_store.request_cancel(session, job_id)


def retry_job(engine: Engine, job_id: int) -> JobInfo:
    """Queue a failed or cancelled job again."""
    with session_scope(engine) as session:
        return job_store.retry_job(session, job_id)


def submit_job(engine: Engine, kind: str, params: dict, project: str | None = None) -> JobInfo:
    """Queue a job once its params and references are checked (see `services.jobs.submit_job`)."""
    from segloop.platform.services import jobs

    return jobs.submit_job(engine, kind, params, project)


def job_kind_defaults() -> dict[str, tuple[str, dict]]:
    """{kind: (description, default params)} of every job kind (a required field's default is None)."""
    from segloop.platform.core.specs import to_json
    from segloop.platform.services import jobs

    return {kind: (description, {f.name: to_json(f.default) for f in jobs.operation_fields(kind)})
            for kind, description in jobs.operation_descriptions().items()}
