"""Versioned object masks on frames, with optimistic locking."""
from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

import numpy as np
from sqlalchemy import and_, exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from segloop.platform.core.errors import NotFoundError
from segloop.platform.core.masks import decode_rle, encode_rle
from segloop.platform.db.entities import AnnotationInfo, FrameInfo, from_row
from segloop.platform.db.orm import Annotation, Frame, Video
from segloop.platform.db.stores import get_row, id_chunks

SOURCES = ("manual", "imported", "propagated", "predicted")
HUMAN_SOURCES = ("manual", "imported")  # masks a person made or vouched for: ground truth for the models
STATUSES = ("draft", "submitted", "reviewed")
LABEL_FILTERS = ("any", "unlabeled", "labeled", "draft", "submitted", "reviewed")


class ConflictError(ValueError):
    """A save based on a stale version: someone else saved this object's mask in between (the message says so to
    the person, as every refused input is reported)."""


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
    mask = np.asarray(mask, dtype=bool)
    for _ in range(APPEND_ATTEMPTS):
        current = latest_version(session, frame_id, object_id)
        if expected_version is not None and expected_version != current:
            raise ConflictError(
                f"frame {frame_id} object {object_id}: you edited version {expected_version}, "
                f"but version {current} was saved meanwhile; reload and redo your change"
            )
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
            if expected_version is None:  # an import appends: it follows the version another process just saved
                continue
            raise ConflictError(
                f"frame {frame_id} object {object_id}: another save of version {current + 1} won; reload"
            ) from None
        return from_row(AnnotationInfo, row)
    raise ConflictError(f"frame {frame_id} object {object_id}: other saves kept winning ({APPEND_ATTEMPTS} tries); "
                        "run it again")


APPEND_ATTEMPTS = 5


def latest_version(session: Session, frame_id: int, object_id: int) -> int:
    """The newest version number of an object's mask on a frame (0 when there is none)."""
    value = session.scalar(
        select(func.max(Annotation.version)).where(
            Annotation.frame_id == frame_id, Annotation.object_id == object_id
        )
    )
    return int(value or 0)


def same_mask(annotation: AnnotationInfo, mask: np.ndarray, class_id: int | None) -> bool:
    """Whether `mask` with `class_id` is exactly what `annotation` already stores."""
    mask = np.asarray(mask, dtype=bool)
    return (annotation.class_id == class_id and (annotation.mask_height, annotation.mask_width) == mask.shape
            and annotation.mask_rle == json.dumps(encode_rle(mask)["counts"]))


def annotation_mask(annotation: AnnotationInfo) -> np.ndarray:
    """The boolean mask of an annotation."""
    counts = json.loads(annotation.mask_rle)
    return decode_rle({"size": [annotation.mask_height, annotation.mask_width], "counts": counts})


def _is_newest(row, sources: Sequence[str] | None = None):
    """SQL condition: `row` (Annotation or an alias) is its (frame, object)'s newest version (among `sources`)."""
    newer = aliased(Annotation)
    conditions = [newer.frame_id == row.frame_id, newer.object_id == row.object_id, newer.version > row.version]
    if sources is not None:
        conditions.append(newer.source.in_(sources))
    return ~select(newer.id).where(*conditions).exists()


def _latest_rows_query(sources: Sequence[str] | None = None):
    """SELECT of the newest version of every (frame, object), counting only `sources` when given."""
    query = select(Annotation).where(_is_newest(Annotation, sources))
    return query if sources is None else query.where(Annotation.source.in_(sources))


def latest_annotations(session: Session, frame_id: int, sources: Sequence[str] | None = None) -> list[AnnotationInfo]:
    """The newest version of every object's mask on one frame (newest among `sources` when given)."""
    query = _latest_rows_query(sources).where(Annotation.frame_id == frame_id).order_by(Annotation.object_id)
    return [from_row(AnnotationInfo, r) for r in session.scalars(query)]


def latest_annotations_for_video(session: Session, video_id: int) -> list[AnnotationInfo]:
    """The newest version of every object's mask on every frame of a video."""
    query = (
        _latest_rows_query()
        .join(Frame, Frame.id == Annotation.frame_id)
        .where(Frame.video_id == video_id)
        .order_by(Frame.index, Annotation.object_id)
    )
    return [from_row(AnnotationInfo, r) for r in session.scalars(query)]


# ---------------------------------------------------------------- label status of frames


def _has_newest_with_status(status: str):
    """EXISTS: the frame (`Frame`) has an object whose newest version has `status`."""
    latest = aliased(Annotation)
    return exists(select(latest.id).where(latest.frame_id == Frame.id, latest.status == status, _is_newest(latest)))


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
        return _has_newest_with_status("draft")
    if status == "submitted":
        return and_(~_has_newest_with_status("draft"), _has_newest_with_status("submitted"))
    if status == "reviewed":
        return and_(has_any, ~_has_newest_with_status("draft"), ~_has_newest_with_status("submitted"))
    raise ValueError(f"label status: {status!r} is not one of {', '.join(LABEL_FILTERS)}")


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
    """The label status of each given frame (one query per chunk of frames)."""
    found: dict[int, list[str]] = {int(f): [] for f in frame_ids}
    for chunk in id_chunks(list(found)):
        rows = session.execute(select(Annotation.frame_id, Annotation.status)
                               .where(Annotation.frame_id.in_(chunk), _is_newest(Annotation)))
        for frame_id, status in rows:
            found[frame_id].append(status)
    return {frame_id: status_from_annotations(statuses) for frame_id, statuses in found.items()}


# ---------------------------------------------------------------- frames and videos by mask source


def human_labeled_frame_ids(session: Session, project_id: int) -> set[int]:
    """Frames of a project that have a human (manual or imported) mask."""
    query = (
        select(Annotation.frame_id).distinct()
        .join(Frame, Frame.id == Annotation.frame_id)
        .join(Video, Video.id == Frame.video_id)
        .where(Video.project_id == project_id, Annotation.source.in_(HUMAN_SOURCES))
    )
    return set(session.scalars(query))


def human_label_times(session: Session, video_id: int) -> list[tuple[int, datetime]]:
    """(frame index, newest save time) of a video's frames with human masks, most recently labeled first."""
    newest = func.max(Annotation.updated_at)
    query = (select(Frame.index, newest).join(Annotation, Annotation.frame_id == Frame.id)
             .where(Frame.video_id == video_id, Annotation.source.in_(HUMAN_SOURCES))
             .group_by(Frame.index).order_by(newest.desc(), Frame.index.desc()))
    return [(int(i), t) for i, t in session.execute(query)]


def annotated_frames_per_video(session: Session, project_id: int) -> dict[int, int]:
    """{video id: frames with at least one mask} of a project's videos that have any."""
    query = (select(Frame.video_id, func.count(func.distinct(Annotation.frame_id)))
             .join(Annotation, Annotation.frame_id == Frame.id)
             .join(Video, Video.id == Frame.video_id)
             .where(Video.project_id == project_id).group_by(Frame.video_id))
    return {int(v): int(n) for v, n in session.execute(query)}


def videos_with_sources(session: Session, project_id: int, sources: Sequence[str]) -> list[tuple[int, str, int]]:
    """(video id, name, frames with a mask from `sources`) of a project's videos that have any, in id order."""
    query = (select(Video.id, Video.name, func.count(func.distinct(Annotation.frame_id)))
             .join(Frame, Frame.video_id == Video.id).join(Annotation, Annotation.frame_id == Frame.id)
             .where(Video.project_id == project_id, Annotation.source.in_(sources))
             .group_by(Video.id, Video.name).order_by(Video.id))
    return [(int(v), str(n), int(c)) for v, n, c in session.execute(query)]


def frames_with_sources(session: Session, video_id: int, sources: Sequence[str], *,
                        also: Sequence[str] | None = None, offset: int = 0, limit: int = 12
                        ) -> tuple[list[FrameInfo], int]:
    """(page in index order, total) of a video's frames with a mask from `sources` (and one from `also`, if given)."""
    query = select(Frame).where(Frame.video_id == video_id,
                                Frame.id.in_(select(Annotation.frame_id).where(Annotation.source.in_(sources))))
    if also is not None:
        query = query.where(Frame.id.in_(select(Annotation.frame_id).where(Annotation.source.in_(also))))
    total = int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    rows = session.scalars(query.order_by(Frame.index).offset(max(offset, 0)).limit(limit))
    return [from_row(FrameInfo, f) for f in rows], total


def frames_having_sources(session: Session, frame_ids: Sequence[int], sources: Sequence[str]) -> set[int]:
    """Which of the given frames have a mask from `sources`."""
    found: set[int] = set()
    for chunk in id_chunks(frame_ids):
        found.update(session.scalars(select(Annotation.frame_id).distinct()
                                     .where(Annotation.frame_id.in_(chunk), Annotation.source.in_(sources))))
    return found


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
    row = get_row(session, Annotation, annotation_id, "annotation")
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
