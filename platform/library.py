"""Read services for browsing footage (used by the web UI and the CLI): paged, never loading everything."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from segloop.platform.db import session_scope
from segloop.platform.entities import FrameInfo, JobInfo, ProjectInfo, VideoInfo
from segloop.platform.stores import annotations as annotation_store
from segloop.platform.stores import footage, projects
from segloop.platform.stores import jobs as job_store


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


def frame_page(engine: Engine, video_id: int, page: int, page_size: int) -> list[FrameInfo]:
    """One page of a video's frames."""
    with session_scope(engine) as session:
        return footage.list_frames(session, video_id, offset=page * page_size, limit=page_size)


def recent_jobs(engine: Engine, limit: int = 50) -> list[JobInfo]:
    """The newest jobs."""
    with session_scope(engine) as session:
        return job_store.list_jobs(session, limit=limit)
