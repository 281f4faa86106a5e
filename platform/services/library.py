"""Read services for browsing footage (used by the web UI and the CLI): paged, never loading everything."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import Engine

from segloop.platform.core.settings import load_settings
from segloop.platform.db.engine import session_scope
from segloop.platform.db.entities import AnnotationInfo, FrameFilter, FrameInfo, JobInfo, ProjectInfo, VideoInfo
from segloop.platform.db.stores import annotations as annotation_store
from segloop.platform.db.stores import audit, footage, projects
from segloop.platform.db.stores import jobs as job_store
from segloop.platform.services import access
from segloop.platform.services.access import Actor
from segloop.platform.services.auth import actor_name

LABEL_FILTERS = annotation_store.LABEL_FILTERS


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


def project_time_span(engine: Engine, project_id: int) -> float:
    """Seconds from the start of the project's videos to its latest frame (the longest video's last timestamp)."""
    with session_scope(engine) as session:
        return footage.latest_timestamp(session, project_id)


def recent_jobs(engine: Engine, limit: int = 50) -> list[JobInfo]:
    """The newest jobs."""
    with session_scope(engine) as session:
        return job_store.list_jobs(session, limit=limit)


# ---------------------------------------------------------------- browsing frames


class LibraryError(ValueError):
    """A browse request the library cannot answer; the message names the field and why."""


@dataclass(frozen=True)
class LibraryFrame:
    """A frame as listed in the library: with its video's name and its label status."""

    frame: FrameInfo
    video_name: str
    status: str


def check_filter(flt: FrameFilter) -> FrameFilter:
    """The filter, or LibraryError naming the field that cannot be used."""
    if flt.label_status not in LABEL_FILTERS:
        raise LibraryError(f"label status: {flt.label_status!r} is not one of {', '.join(LABEL_FILTERS)}")
    if flt.dup_group is not None and flt.video_id is None:
        raise LibraryError("near-duplicate group: choose a video first (groups are numbered per video)")
    return flt


def count_filtered_frames(engine: Engine, flt: FrameFilter) -> int:
    """How many frames match the filter."""
    with session_scope(engine) as session:
        return footage.count_filtered_frames(session, check_filter(flt))


def browse_frames(engine: Engine, flt: FrameFilter, page: int, page_size: int) -> list[LibraryFrame]:
    """One page (0-based) of the frames matching the filter, with video names and label statuses."""
    if page < 0 or page_size < 1:
        raise LibraryError(f"page {page} of size {page_size}: page must be >= 0 and size >= 1")
    with session_scope(engine) as session:
        rows = footage.filtered_frames(session, check_filter(flt), page * page_size, page_size)
        statuses = annotation_store.frame_statuses(session, [frame.id for frame, _ in rows])
    return [LibraryFrame(frame, name, statuses[frame.id]) for frame, name in rows]


def duplicate_groups(engine: Engine, video_id: int, limit: int = 500) -> list[tuple[int, int]]:
    """(group, frame count) of a video's near-duplicate groups that hold more than one frame, largest first."""
    with session_scope(engine) as session:
        return footage.duplicate_groups(session, video_id, limit)


@dataclass(frozen=True)
class FrameDetail:
    """A frame with its video, its newest masks and their label status."""

    frame: FrameInfo
    video: VideoInfo
    annotations: list[AnnotationInfo]
    status: str

    def label_map(self) -> np.ndarray:
        """The newest masks as one uint8 label map of the stored frame size (value = object id)."""
        return annotation_store.label_map(self.annotations, self.video.stored_height, self.video.stored_width)


def frame_detail(engine: Engine, frame_id: int) -> FrameDetail:
    """Everything the frame viewer shows about one frame."""
    with session_scope(engine) as session:
        frame = footage.get_frame(session, frame_id)
        video = footage.get_video(session, frame.video_id)
        latest = annotation_store.latest_annotations(session, frame_id)
    return FrameDetail(frame, video, latest, annotation_store.status_from_annotations([a.status for a in latest]))


def video_summaries(engine: Engine, project_id: int) -> list[dict]:
    """Per video of a project: name, kind, frames, size, fps, annotated frames."""
    with session_scope(engine) as session:
        annotated = annotation_store.annotated_frames_per_video(session, project_id)
        videos = footage.list_videos(session, project_id)
    return [{"video": v.name, "kind": v.source_kind, "frames": v.frame_count,
             "size": f"{v.stored_width}x{v.stored_height}", "fps": round(v.sample_fps or v.fps or 0.0, 2),
             "annotated frames": annotated.get(v.id, 0)} for v in videos]


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


def cancel_job(engine: Engine, job_id: int, *, actor: Actor | None = None) -> JobInfo:
    """Cancel a queued job now, or ask the worker of a running one to stop (admins; audited)."""
    access.require(engine, actor, "run_jobs")
    with session_scope(engine) as session:
        job = job_store.request_cancel(session, job_id, load_settings().stale_after_seconds)
        audit.record(session, actor_name(actor), "job_cancel", f"job {job_id}")
        return job


def retry_job(engine: Engine, job_id: int, *, actor: Actor | None = None) -> JobInfo:
    """Queue a failed or cancelled job again (admins; audited)."""
    access.require(engine, actor, "run_jobs")
    with session_scope(engine) as session:
        job = job_store.retry_job(session, job_id)
        audit.record(session, actor_name(actor), "job_retry", f"job {job_id}")
        return job


def submit_job(engine: Engine, kind: str, params: dict, project: str | None = None, *,
               actor: Actor | None = None) -> JobInfo:
    """Queue a job once its params and references are checked (see `services.jobs.submit_job`)."""
    from segloop.platform.services import jobs

    return jobs.submit_job(engine, kind, params, project, actor=actor)


def job_kind_defaults() -> dict[str, tuple[str, dict]]:
    """{kind: (description, default params)} of every job kind (a required field's default is None)."""
    from segloop.platform.core.specs import to_json
    from segloop.platform.services import jobs

    return {kind: (description, {f.name: to_json(f.default) for f in jobs.operation_fields(kind)})
            for kind, description in jobs.operation_descriptions().items()}


EXPORT_FORMATS = {"davis": "DAVIS palette PNGs (zip)", "coco": "COCO JSON with RLE masks"}


def export_annotations(engine: Engine, project: str, fmt: str, settings=None, *,
                       actor: Actor | None = None) -> tuple[str, bytes, str, str | None]:
    """(file name, bytes, MIME type, a note on what the format could not hold or None) of a project's newest
    annotations as a zipped DAVIS root or a COCO JSON file (the `segloop export` writers, into a temporary folder;
    admins; audited)."""
    import io
    import tempfile
    import zipfile

    from segloop.platform.media.exchange import export_project, overlap_note

    access.require(engine, actor, "export", project)
    with tempfile.TemporaryDirectory(prefix="segloop-export-") as folder:
        out = Path(folder) / (f"{project}-davis" if fmt == "davis" else f"{project}-coco.json")
        report = export_project(project, fmt, out, settings)
        with session_scope(engine) as session:
            audit.record(session, actor_name(actor), "export", project, detail={"format": fmt, "masks": report.masks})
        if fmt == "coco":
            return out.name, out.read_bytes(), "application/json", None
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(out.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(out.parent))
        return f"{out.name}.zip", buffer.getvalue(), "application/zip", overlap_note(report)
