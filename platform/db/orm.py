"""ORM models of the whole product (SQLAlchemy 2 typed mappings); the schema itself comes from Alembic."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base with a naming convention so migrations are portable across dialects."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class Project(Base):
    """A user's collection of footage, label classes and runs."""

    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    videos: Mapped[list[Video]] = relationship(back_populates="project", cascade="all, delete-orphan")


class Video(Base):
    """One ingested video (a file or a folder of frames) with its decoding metadata."""

    __tablename__ = "videos"
    __table_args__ = (
        UniqueConstraint("project_id", "sha256"),
        UniqueConstraint("project_id", "name"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    source_path: Mapped[str] = mapped_column(Text)
    source_kind: Mapped[str] = mapped_column(String(16))  # video | frames
    sha256: Mapped[str] = mapped_column(String(64))
    fps: Mapped[float | None] = mapped_column(Float)
    sample_fps: Mapped[float | None] = mapped_column(Float)
    source_frame_count: Mapped[int] = mapped_column(Integer)
    frame_count: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    stored_width: Mapped[int] = mapped_column(Integer)
    stored_height: Mapped[int] = mapped_column(Integer)
    duration: Mapped[float | None] = mapped_column(Float)
    codec: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="ready")
    storage_dir: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    project: Mapped[Project] = relationship(back_populates="videos")
    frames: Mapped[list[Frame]] = relationship(back_populates="video", cascade="all, delete-orphan")


class Frame(Base):
    """One stored frame of a video (JPEG + thumbnail under the data dir)."""

    __tablename__ = "frames"
    __table_args__ = (
        UniqueConstraint("video_id", "index"),
        Index("ix_frames_video_dup", "video_id", "dup_group"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    video_id: Mapped[int] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    source_index: Mapped[int] = mapped_column(Integer)
    timestamp: Mapped[float] = mapped_column(Float)
    image_path: Mapped[str] = mapped_column(Text)
    thumb_path: Mapped[str] = mapped_column(Text)
    phash: Mapped[int] = mapped_column(BigInteger)
    dup_group: Mapped[int] = mapped_column(Integer)
    video: Mapped[Video] = relationship(back_populates="frames")


class LabelClass(Base):
    """A semantic class of a project (VSS) or the class of a tracked object (VOS)."""

    __tablename__ = "label_classes"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    color: Mapped[str] = mapped_column(String(9), default="#ff0000")
    position: Mapped[int] = mapped_column(Integer, default=0)


class Annotation(Base):
    """One version of one object's mask on one frame (COCO RLE); versions give optimistic locking."""

    __tablename__ = "annotations"
    __table_args__ = (
        UniqueConstraint("frame_id", "object_id", "version"),
        Index("ix_annotations_frame_object", "frame_id", "object_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    frame_id: Mapped[int] = mapped_column(ForeignKey("frames.id", ondelete="CASCADE"))
    object_id: Mapped[int] = mapped_column(Integer)
    class_id: Mapped[int | None] = mapped_column(ForeignKey("label_classes.id", ondelete="SET NULL"))
    mask_rle: Mapped[str] = mapped_column(Text)
    mask_height: Mapped[int] = mapped_column(Integer)
    mask_width: Mapped[int] = mapped_column(Integer)
    area: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16))  # manual | imported | propagated | predicted
    status: Mapped[str] = mapped_column(String(16), default="draft")  # draft | submitted | reviewed
    author: Mapped[str] = mapped_column(String(120), default="")
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Checkpoint(Base):
    """A model file produced by a pretrain or fine-tune job."""

    __tablename__ = "checkpoints"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id", ondelete="SET NULL"), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(16))  # pretrain | vss | vos
    backbone: Mapped[str] = mapped_column(String(120))
    path: Mapped[str] = mapped_column(Text)
    step: Mapped[int | None] = mapped_column(Integer)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EmbeddingSet(Base):
    """Per-frame vectors of a project computed with one checkpoint (files under the data dir)."""

    __tablename__ = "embedding_sets"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    checkpoint_id: Mapped[int | None] = mapped_column(ForeignKey("checkpoints.id", ondelete="SET NULL"))
    name: Mapped[str] = mapped_column(String(200))
    backbone: Mapped[str] = mapped_column(String(120))
    dim: Mapped[int] = mapped_column(Integer)
    count: Mapped[int] = mapped_column(Integer)
    vectors_path: Mapped[str] = mapped_column(Text)
    frame_ids_path: Mapped[str] = mapped_column(Text)
    index_path: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Selection(Base):
    """A selection run: which strategy picked which frames to label."""

    __tablename__ = "selections"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    embedding_set_id: Mapped[int | None] = mapped_column(ForeignKey("embedding_sets.id", ondelete="SET NULL"))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    strategy: Mapped[str] = mapped_column(String(40))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    budget: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SelectionItem(Base):
    """One pick of a selection run, with its rank, score and the reason it was chosen."""

    __tablename__ = "selection_items"
    __table_args__ = (
        UniqueConstraint("selection_id", "rank"),
        UniqueConstraint("selection_id", "frame_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    selection_id: Mapped[int] = mapped_column(ForeignKey("selections.id", ondelete="CASCADE"))
    frame_id: Mapped[int] = mapped_column(ForeignKey("frames.id", ondelete="CASCADE"), index=True)
    rank: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="proposed")  # proposed | accepted | rejected


class Job(Base):
    """A unit of long work (ingest, pretrain, embed, select, fine-tune, ...) in the DB-backed queue."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_id", "status", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    log_path: Mapped[str | None] = mapped_column(Text)
    worker_id: Mapped[str | None] = mapped_column(String(120))
    heartbeat_at: Mapped[datetime | None] = mapped_column()
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    error: Mapped[str | None] = mapped_column(Text)
    retryable: Mapped[bool] = mapped_column(Boolean, default=False)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()


class Metric(Base):
    """One measured number (J&F of a sequence, mIoU of a model, loss at a step ...)."""

    __tablename__ = "metrics"
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    checkpoint_id: Mapped[int | None] = mapped_column(ForeignKey("checkpoints.id", ondelete="SET NULL"))
    scope: Mapped[str] = mapped_column(String(32))  # overall | sequence | object | class | step
    scope_key: Mapped[str] = mapped_column(String(200), default="")
    name: Mapped[str] = mapped_column(String(80))
    value: Mapped[float] = mapped_column(Float)
    step: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FrameScore(Base):
    """A per-frame signal from a model run (propagation confidence, prediction entropy, ...) for selectors."""

    __tablename__ = "frame_scores"
    __table_args__ = (Index("ix_frame_scores_name_frame", "name", "frame_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    frame_id: Mapped[int] = mapped_column(ForeignKey("frames.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(60))
    value: Mapped[float] = mapped_column(Float)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    checkpoint_id: Mapped[int | None] = mapped_column(ForeignKey("checkpoints.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class User(Base):
    """A person who signs in to the web UI: a role and a salted scrypt password hash (never the password)."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # admin | reviewer | annotator
    password_hash: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(254), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProjectGrant(Base):
    """A user may work on a project (admins need none: they see every project)."""

    __tablename__ = "project_grants"
    __table_args__ = (UniqueConstraint("user_id", "project_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UserSession(Base):
    """A signed-in browser: the SHA-256 of its random cookie token, until it expires or is revoked."""

    __tablename__ = "user_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    client: Mapped[str] = mapped_column(String(120), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()


class AuditEvent(Base):
    """Who did what, when, from where: logins, failed logins, job launches, user changes, imports, exports, reviews."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_action_created", "action", "created_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(120), default="")
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str] = mapped_column(String(255), default="")
    client: Mapped[str] = mapped_column(String(120), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ReviewEvent(Base):
    """A step of a frame's review: submitted by an annotator, accepted or rejected (with a comment) by a reviewer."""

    __tablename__ = "review_events"
    __table_args__ = (Index("ix_review_events_frame_id_id", "frame_id", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    frame_id: Mapped[int] = mapped_column(ForeignKey("frames.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # submitted | accepted | rejected
    actor: Mapped[str] = mapped_column(String(120))
    annotator: Mapped[str] = mapped_column(String(120))
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FrameTag(Base):
    """A user-named tag of a project ("night", "blurry", "occluded") that many frames can carry."""

    __tablename__ = "frame_tags"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(60))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FrameTagItem(Base):
    """One frame carrying one tag: who tagged it and when (a frame carries a tag at most once)."""

    __tablename__ = "frame_tag_items"
    tag_id: Mapped[int] = mapped_column(ForeignKey("frame_tags.id", ondelete="CASCADE"), primary_key=True)
    frame_id: Mapped[int] = mapped_column(ForeignKey("frames.id", ondelete="CASCADE"), primary_key=True, index=True)
    actor: Mapped[str] = mapped_column(String(120), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
