"""Versioned object masks on frames, with optimistic locking."""
from __future__ import annotations

import json

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from segloop.platform.core.masks import decode_rle, encode_rle
from segloop.platform.db.entities import AnnotationInfo, from_row
from segloop.platform.db.orm import Annotation, Frame, Video
from segloop.platform.db.stores import NotFoundError

SOURCES = ("manual", "imported", "propagated", "predicted")
HUMAN_SOURCES = ("manual", "imported")  # masks a person made or vouched for: ground truth for the models
STATUSES = ("draft", "submitted", "reviewed")


class ConflictError(RuntimeError):
    """A save based on a stale version: someone else saved this object's mask in between."""


def save_annotation(
    session: Session,
    frame_id: int,
    object_id: int,
    mask: np.ndarray,
    source: str,
    *,
    expected_version: int | None = None,
    status: str = "draft",
    author: str = "",
    class_id: int | None = None,
) -> AnnotationInfo:
    """Store a new version of an object's mask; refuse it if `expected_version` is stale.

    `expected_version` is the version the editor started from (0 for a new object); None appends
    without a check (imports). A concurrent save of the same version fails on the unique key.
    """
    if source not in SOURCES:
        raise ValueError(f"annotation source: {source!r} is not one of {', '.join(SOURCES)}")
    if status not in STATUSES:
        raise ValueError(f"annotation status: {status!r} is not one of {', '.join(STATUSES)}")
    if not 1 <= int(object_id) <= 255:
        raise ValueError(f"annotation object_id: {object_id} out of range 1..255")
    if session.get(Frame, frame_id) is None:
        raise NotFoundError(f"frame {frame_id} does not exist")
    current = latest_version(session, frame_id, object_id)
    if expected_version is not None and expected_version != current:
        raise ConflictError(
            f"frame {frame_id} object {object_id}: you edited version {expected_version}, "
            f"but version {current} was saved meanwhile; reload and redo your change"
        )
    mask = np.asarray(mask, dtype=bool)
    row = Annotation(
        frame_id=frame_id,
        object_id=int(object_id),
        class_id=class_id,
        mask_rle=json.dumps(encode_rle(mask)["counts"]),
        mask_height=int(mask.shape[0]),
        mask_width=int(mask.shape[1]),
        area=int(mask.sum()),
        source=source,
        status=status,
        author=author,
        version=current + 1,
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        raise ConflictError(
            f"frame {frame_id} object {object_id}: another save of version {current + 1} won; reload"
        ) from None
    return from_row(AnnotationInfo, row)


def latest_version(session: Session, frame_id: int, object_id: int) -> int:
    """The newest version number of an object's mask on a frame (0 when there is none)."""
    value = session.scalar(
        select(func.max(Annotation.version)).where(
            Annotation.frame_id == frame_id, Annotation.object_id == object_id
        )
    )
    return int(value or 0)


def annotation_mask(annotation: AnnotationInfo) -> np.ndarray:
    """The boolean mask of an annotation."""
    counts = json.loads(annotation.mask_rle)
    return decode_rle({"size": [annotation.mask_height, annotation.mask_width], "counts": counts})


def _latest_rows_query():
    """SELECT of the newest version of every (frame, object)."""
    newer = aliased(Annotation)
    return select(Annotation).where(
        ~select(newer.id)
        .where(
            newer.frame_id == Annotation.frame_id,
            newer.object_id == Annotation.object_id,
            newer.version > Annotation.version,
        )
        .exists()
    )


def latest_annotations(session: Session, frame_id: int) -> list[AnnotationInfo]:
    """The newest version of every object's mask on one frame."""
    rows = session.scalars(_latest_rows_query().where(Annotation.frame_id == frame_id).order_by(Annotation.object_id))
    return [from_row(AnnotationInfo, r) for r in rows]


def latest_annotations_for_video(session: Session, video_id: int) -> list[AnnotationInfo]:
    """The newest version of every object's mask on every frame of a video."""
    query = (
        _latest_rows_query()
        .join(Frame, Frame.id == Annotation.frame_id)
        .where(Frame.video_id == video_id)
        .order_by(Frame.index, Annotation.object_id)
    )
    return [from_row(AnnotationInfo, r) for r in session.scalars(query)]


def label_map(annotations: list[AnnotationInfo], height: int, width: int) -> np.ndarray:
    """A uint8 label map (value = object id) painted from a frame's annotations, higher ids on top."""
    labels = np.zeros((height, width), dtype=np.uint8)
    for annotation in sorted(annotations, key=lambda a: a.object_id):
        mask = annotation_mask(annotation)
        if mask.shape != (height, width):
            raise ValueError(
                f"annotation {annotation.id}: mask is {mask.shape[1]}x{mask.shape[0]}, frame is {width}x{height}"
            )
        labels[mask] = annotation.object_id
    return labels


def set_status(session: Session, annotation_id: int, status: str) -> AnnotationInfo:
    """Move an annotation version to draft, submitted or reviewed."""
    if status not in STATUSES:
        raise ValueError(f"annotation status: {status!r} is not one of {', '.join(STATUSES)}")
    row = session.get(Annotation, annotation_id)
    if row is None:
        raise NotFoundError(f"annotation {annotation_id} does not exist")
    row.status = status
    session.flush()
    return from_row(AnnotationInfo, row)


def count_annotated_frames(session: Session, project_id: int) -> int:
    """How many frames of a project have at least one annotation."""
    query = (
        select(func.count(func.distinct(Annotation.frame_id)))
        .join(Frame, Frame.id == Annotation.frame_id)
        .join(Video, Video.id == Frame.video_id)
        .where(Video.project_id == project_id)
    )
    return int(session.scalar(query) or 0)




def add_imported_masks(
    session: Session,
    masks: list[tuple[int, int, np.ndarray]],
    *,
    source: str = "imported",
    class_id: int | None = None,
    author: str = "import",
) -> int:
    """Bulk-insert first versions of (frame_id, object_id, mask) for frames that have none yet."""
    from sqlalchemy import insert

    rows = []
    for frame_id, object_id, mask in masks:
        if not 1 <= int(object_id) <= 255:
            raise ValueError(f"frame {frame_id}: object id {object_id} out of range 1..255")
        mask = np.asarray(mask, dtype=bool)
        rows.append(
            dict(frame_id=frame_id, object_id=int(object_id), class_id=class_id,
                 mask_rle=json.dumps(encode_rle(mask)["counts"]), mask_height=int(mask.shape[0]),
                 mask_width=int(mask.shape[1]), area=int(mask.sum()), source=source, status="submitted",
                 author=author, version=1)
        )
    if rows:
        session.execute(insert(Annotation), rows)
    return len(rows)
