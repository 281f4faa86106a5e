"""Plain dataclasses returned by the stores; ORM rows never leave the store layer."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, TypeVar

T = TypeVar("T")


def from_row(cls: type[T], row: Any) -> T:
    """Build the dataclass `cls` from the same-named attributes of an ORM row."""
    return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})  # type: ignore[arg-type]


@dataclass(frozen=True)
class ProjectInfo:
    """A project."""

    id: int
    name: str
    description: str
    created_at: datetime


@dataclass(frozen=True)
class VideoInfo:
    """An ingested video and its decoding metadata."""

    id: int
    project_id: int
    name: str
    source_path: str
    source_kind: str
    sha256: str
    fps: float | None
    sample_fps: float | None
    source_frame_count: int
    frame_count: int
    width: int
    height: int
    stored_width: int
    stored_height: int
    duration: float | None
    codec: str | None
    status: str
    storage_dir: str
    created_at: datetime


@dataclass(frozen=True)
class FrameInfo:
    """A stored frame; paths are relative to the data dir."""

    id: int
    video_id: int
    index: int
    source_index: int
    timestamp: float
    image_path: str
    thumb_path: str
    phash: int
    dup_group: int


@dataclass(frozen=True)
class LabelClassInfo:
    """A label class of a project."""

    id: int
    project_id: int
    name: str
    color: str
    position: int


@dataclass(frozen=True)
class AnnotationInfo:
    """One version of an object's mask on a frame."""

    id: int
    frame_id: int
    object_id: int
    class_id: int | None
    mask_rle: str
    mask_height: int
    mask_width: int
    area: int
    source: str
    status: str
    author: str
    version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class JobInfo:
    """A queued, running or finished job."""

    id: int
    kind: str
    params: dict[str, Any]
    status: str
    progress: float
    message: str
    log_path: str | None
    worker_id: str | None
    heartbeat_at: datetime | None
    attempts: int
    max_attempts: int
    error: str | None
    retryable: bool
    cancel_requested: bool
    result: dict[str, Any]
    project_id: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class CheckpointInfo:
    """A model file produced by a job."""

    id: int
    project_id: int | None
    job_id: int | None
    kind: str
    backbone: str
    path: str
    step: int | None
    params: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class EmbeddingSetInfo:
    """Per-frame vectors registered for a project."""

    id: int
    project_id: int
    checkpoint_id: int | None
    name: str
    backbone: str
    dim: int
    count: int
    vectors_path: str
    frame_ids_path: str
    index_path: str | None
    params: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class SelectionInfo:
    """A selection run."""

    id: int
    project_id: int
    embedding_set_id: int | None
    job_id: int | None
    strategy: str
    params: dict[str, Any]
    budget: int
    seed: int | None
    created_at: datetime


@dataclass(frozen=True)
class SelectionItemInfo:
    """One pick of a selection run."""

    id: int
    selection_id: int
    frame_id: int
    rank: int
    score: float
    reason: str
    status: str


@dataclass(frozen=True)
class MetricInfo:
    """One measured number."""

    id: int
    job_id: int | None
    project_id: int | None
    checkpoint_id: int | None
    scope: str
    scope_key: str
    name: str
    value: float
    step: int | None
    created_at: datetime


@dataclass(frozen=True)
class FrameFilter:
    """Which frames of a project to list: optionally one video, one label status, one near-duplicate group, one
    tag (its id)."""

    project_id: int
    video_id: int | None = None
    label_status: str = "any"
    dup_group: int | None = None
    tag_id: int | None = None


@dataclass
class NewFrame:
    """A frame about to be stored (input to the footage store)."""

    index: int
    source_index: int
    timestamp: float
    image_path: str
    thumb_path: str
    phash: int
    dup_group: int


@dataclass
class NewVideo:
    """A video about to be stored with its frames (input to the footage store)."""

    name: str
    source_path: str
    source_kind: str
    sha256: str
    fps: float | None
    sample_fps: float | None
    source_frame_count: int
    width: int
    height: int
    stored_width: int
    stored_height: int
    duration: float | None
    codec: str | None
    storage_dir: str
    frames: list[NewFrame] = field(default_factory=list)


@dataclass(frozen=True)
class UserInfo:
    """A user of the web UI (the password hash stays in the store)."""

    id: int
    name: str
    role: str
    email: str | None
    created_at: datetime


@dataclass(frozen=True)
class UserSessionInfo:
    """A signed-in browser session (the token itself is never stored, only its SHA-256)."""

    id: int
    user_id: int
    client: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class AuditEventInfo:
    """One audited action."""

    id: int
    created_at: datetime
    actor: str
    action: str
    target: str
    client: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class ReviewEventInfo:
    """One step of a frame's review history."""

    id: int
    frame_id: int
    project_id: int
    kind: str
    actor: str
    annotator: str
    comment: str
    created_at: datetime


@dataclass(frozen=True)
class FrameTagInfo:
    """A user-named tag of a project."""

    id: int
    project_id: int
    name: str
    created_at: datetime
