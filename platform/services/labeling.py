"""Labeling services for the web UI: the queue, a frame's editable label map, brush/polygon edits, saving.

A frame's labels are edited as one uint8 label map (value = object id). Saving turns it back into one
mask per object and stores a new version only for objects whose mask or class changed, refusing the
whole save when any object was saved by someone else since the editor loaded it (optimistic locking).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from sqlalchemy import Engine

from segloop.platform.core.backbones import DEFAULT_BACKBONE
from segloop.platform.core.errors import ValidationError
from segloop.platform.core.image import read_rgb
from segloop.platform.core.masks import MaskError, davis_palette, mask_from_bytes
from segloop.platform.core.names import LABEL_CLASS_NAME_MAX, check_name
from segloop.platform.core.storage import resolve_inside
from segloop.platform.db.engine import session_scope
from segloop.platform.db.entities import FrameInfo, LabelClassInfo, VideoInfo
from segloop.platform.db.stores import annotations as annotation_store
from segloop.platform.db.stores import audit, footage, projects
from segloop.platform.db.stores import reviews as review_store
from segloop.platform.db.stores.annotations import ConflictError
from segloop.platform.services import access
from segloop.platform.services.access import Actor

MAX_MASK_UPLOAD_BYTES = 64 * 1024 * 1024


class LabelingError(ValueError):
    """Edits, masks or requests the labeling service cannot use; the message says which and why."""


@dataclass
class FrameLabels:
    """A frame with the newest version of each object's mask, as loaded into the editor."""

    frame: FrameInfo
    video: VideoInfo
    labels: np.ndarray
    versions: dict[int, int] = field(default_factory=dict)
    classes: dict[int, int | None] = field(default_factory=dict)
    statuses: dict[int, str] = field(default_factory=dict)
    annotation_ids: dict[int, int] = field(default_factory=dict)
    sources: dict[int, str] = field(default_factory=dict)
    review_step: int = 0  # id of the frame's newest review event when loaded (0: none), to detect a decision since

    @property
    def is_propagated_draft(self) -> bool:
        """Whether the frame holds only propagation drafts (no human mask yet)."""
        return bool(self.sources) and all(s == "propagated" for s in self.sources.values())


@dataclass(frozen=True)
class SaveOutcome:
    """What a save stored: new versions per object, and objects whose status changed."""

    saved: dict[int, int]
    restatused: tuple[int, ...]

    @property
    def changed(self) -> bool:
        """Whether the save wrote anything."""
        return bool(self.saved or self.restatused)


@dataclass(frozen=True)
class QueueItem:
    """A frame waiting in the labeling queue."""

    frame: FrameInfo
    video_name: str
    status: str
    rank: int | None = None


@dataclass(frozen=True)
class QueuePage:
    """One page of the labeling queue and the queue's total length."""

    items: list[QueueItem]
    total: int


# ---------------------------------------------------------------- the canvas's label map (run lengths)


def label_runs(labels: np.ndarray) -> list[int]:
    """An integer map (label map, superpixel ids) as row-major runs [value, length, ...] (what the canvas reads)."""
    flat = np.asarray(labels).ravel()
    if flat.size == 0:
        return []
    starts = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1])
    lengths = np.diff(np.concatenate([starts, [flat.size]]))
    return np.stack([flat[starts].astype(np.int64), lengths]).T.ravel().tolist()


def labels_from_runs(runs: Any, height: int, width: int) -> np.ndarray:
    """The label map (height×width uint8) of runs from the canvas, or LabelingError naming what is wrong."""
    if not isinstance(runs, list) or len(runs) % 2 or len(runs) > 2 * height * width:
        raise LabelingError("labels: expected a list of [value, length] pairs")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in runs):
        raise LabelingError("labels: values and lengths must be integers")
    if any(abs(v) > 2**40 for v in runs):  # before numpy, which cannot hold a 10**30 run
        raise LabelingError(f"labels: a value or run length is larger than any frame (this one has "
                            f"{height * width} pixels)")
    pairs = np.asarray(runs, dtype=np.int64).reshape(-1, 2)
    values, lengths = pairs[:, 0], pairs[:, 1]
    if ((values < 0) | (values > 255)).any():
        raise LabelingError("labels: object ids must be in 0..255")
    if (lengths < 1).any() or int(lengths.sum()) != height * width:
        raise LabelingError(f"labels: runs cover {int(lengths[lengths > 0].sum())} pixels, the frame has "
                            f"{width}x{height} = {height * width}")
    return np.repeat(values.astype(np.uint8), lengths).reshape(height, width)


def object_classes_from(payload: Any, known: set[int]) -> dict[int, int | None]:
    """{object id: class id or None} sent by the canvas, checked against the project's classes."""
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise LabelingError("classes: expected an object of {object id: class id}")
    classes: dict[int, int | None] = {}
    for key, value in payload.items():
        try:
            object_id = int(key)
        except (TypeError, ValueError):
            raise LabelingError(f"classes: {key!r} is not an object id") from None
        if not 1 <= object_id <= 255:
            raise LabelingError(f"classes: object id {object_id} is not in 1..255")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value not in known):
            raise LabelingError(f"classes: object {object_id} has class {value!r}, which this project does not have")
        classes[object_id] = value
    return classes


# ---------------------------------------------------------------- loading and saving


def load_frame_labels(engine: Engine, frame_id: int) -> FrameLabels:
    """The frame, its video, and its label map from the newest annotation versions (the draft to edit)."""
    with session_scope(engine) as session:
        frame = footage.get_frame(session, frame_id)
        video = footage.get_video(session, frame.video_id)
        latest = annotation_store.latest_annotations(session, frame_id)
        step = review_store.latest_events(session, [frame_id]).get(frame_id)
    labels = annotation_store.label_map(latest, video.stored_height, video.stored_width)
    return FrameLabels(
        frame=frame, video=video, labels=labels, review_step=step.id if step is not None else 0,
        versions={a.object_id: a.version for a in latest},
        classes={a.object_id: a.class_id for a in latest},
        statuses={a.object_id: a.status for a in latest},
        annotation_ids={a.object_id: a.id for a in latest},
        sources={a.object_id: a.source for a in latest},
    )


def save_frame_labels(
    engine: Engine,
    frame_id: int,
    labels: np.ndarray,
    loaded_versions: dict[int, int],
    classes: dict[int, int | None] | None = None,
    *,
    status: str = "draft",
    author: str = "",
    actor: Actor | None = None,
    review_step: int | None = None,
) -> SaveOutcome:
    """Store changed objects (and drafts a person saved) as new versions; on submit / review also move unchanged objects
    to `status`.

    `loaded_versions` are the versions the editor started from; if any object of the frame has a
    newer version now, nothing is saved and ConflictError says which object changed; so too when `review_step` (the
    newest review event the editor loaded, `FrameLabels.review_step`) is no longer the newest: a reviewer's
    rejection or acceptance since is never overwritten unseen. With an actor (or in the web UI), the actor must be
    allowed to label (review, for `reviewed`) the frame's project and is the author; saving as `reviewed` is an
    acceptance of the frame, recorded as the Review page records one.
    """
    if status not in annotation_store.STATUSES:
        raise LabelingError(f"status: {status!r} is not one of {', '.join(annotation_store.STATUSES)}")
    actor = access.effective_actor(actor)
    if actor is not None:
        access.require_frame(engine, actor, "review" if status == "reviewed" else "label", frame_id)
        author = actor.name
    labels = _object_ids(labels)
    classes = classes or {}
    with session_scope(engine) as session:
        frame = footage.get_frame(session, frame_id)
        video = footage.get_video(session, frame.video_id)
        if labels.shape != (video.stored_height, video.stored_width):
            raise LabelingError(f"frame {frame_id}: label map is {labels.shape[1]}x{labels.shape[0]}, "
                                f"frame is {video.stored_width}x{video.stored_height}")
        known = {c.id for c in projects.list_label_classes(session, video.project_id)}
        foreign = sorted(c for c in classes.values() if c is not None and c not in known)
        if foreign:
            raise LabelingError(f"classes: class id {foreign[0]} is not a label class of this frame's project")
        latest = {a.object_id: a for a in annotation_store.latest_annotations(session, frame_id)}
        _check_not_stale(frame_id, latest, loaded_versions)
        step = review_store.latest_events(session, [frame_id]).get(frame_id)
        if review_step is not None and (step.id if step is not None else 0) != review_step:
            raise ConflictError(f"frame {frame_id} was {step.kind} by {step.actor} after you opened it"
                                f"{': ' + repr(step.comment) if step.comment else ''}; reload the frame to see it")
        saved: dict[int, int] = {}
        restatused: list[int] = []
        present = {int(v) for v in np.unique(labels) if v != 0}
        for object_id in sorted(present | set(latest)):
            mask = labels == object_id
            current = latest.get(object_id)
            class_id = classes.get(object_id, current.class_id if current else None)
            unchanged = (current is not None and current.class_id == class_id
                         and current.source in annotation_store.HUMAN_SOURCES  # saving a draft makes it human
                         and np.array_equal(annotation_store.annotation_mask(current), mask))
            if current is None and not mask.any():
                continue
            if unchanged:
                if status != "draft" and current.status != status:
                    annotation_store.set_status(session, current.id, status)
                    restatused.append(object_id)
                continue
            info = annotation_store.save_annotation(
                session, frame_id, object_id, mask, "manual", expected_version=loaded_versions.get(object_id, 0),
                status=status, author=author, class_id=class_id)
            saved[object_id] = info.version
        if status == "submitted" and (saved or restatused):
            review_store.record_event(session, frame_id, "submitted", author, author)
        if status == "reviewed" and (saved or restatused):
            annotator = step.annotator if step is not None and step.kind == "submitted" else author
            if annotator == author and (step is None or step.kind != "submitted"):  # the reviewer's own masks, never
                review_store.record_event(session, frame_id, "submitted", author, author)  # submitted: they are now
            review_store.record_event(session, frame_id, "accepted", author, annotator)
            audit.record(session, author, "review_accepted", f"frame {frame_id}",
                         detail={"annotator": annotator, "from": "label page"})
    return SaveOutcome(saved, tuple(restatused))


def _object_ids(labels: Any) -> np.ndarray:
    """A label map as uint8 object ids, or LabelingError: not 2-D, not whole numbers, or outside 0..255."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise LabelingError(f"label map: expected a 2-D map of object ids (height x width), got {labels.ndim} "
                            "dimension(s)")
    if labels.dtype.kind not in "biu":
        raise LabelingError("label map: object ids must be whole numbers")
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) > 255):
        raise LabelingError("label map: object ids must be in 0..255")
    return labels.astype(np.uint8, copy=False)


def frame_status(statuses: dict[int, str]) -> str:
    """A frame's label status from its objects' statuses (as the Library shows it)."""
    return annotation_store.status_from_annotations(list(statuses.values())) if statuses else "unlabeled"


def _check_not_stale(frame_id: int, latest: dict[int, Any], loaded_versions: dict[int, int]) -> None:
    """ConflictError when any object's newest version differs from the one the editor loaded."""
    for object_id in sorted(set(latest) | set(loaded_versions)):
        now = latest[object_id].version if object_id in latest else 0
        loaded = loaded_versions.get(object_id, 0)
        if now != loaded:
            raise ConflictError(
                f"frame {frame_id} object {object_id}: you edited version {loaded}, but version {now} "
                f"was saved meanwhile; reload the frame and redo your change"
            )


def import_mask_png(data: bytes, name: str, height: int, width: int) -> np.ndarray:
    """A label map from an uploaded PNG (palette = object ids, 0/255 grayscale = object 1), sized to the frame."""
    if len(data) > MAX_MASK_UPLOAD_BYTES:
        raise LabelingError(f"{name}: {len(data)} bytes is over the mask limit of {MAX_MASK_UPLOAD_BYTES} bytes")
    try:
        return mask_from_bytes(data, name, (height, width))
    except MaskError as exc:
        raise LabelingError(str(exc)) from None


# ---------------------------------------------------------------- colours


def palette_rgb() -> np.ndarray:
    """The DAVIS palette as a (256, 3) uint8 array (object id → colour)."""
    return np.asarray(davis_palette(), dtype=np.uint8).reshape(256, 3)


def object_color(object_id: int) -> str:
    """The '#rrggbb' colour of an object id."""
    r, g, b = palette_rgb()[int(object_id)]
    return f"#{r:02x}{g:02x}{b:02x}"


def colorize(labels: np.ndarray) -> np.ndarray:
    """An RGBA image of a label map: palette colours, transparent background."""
    rgba = np.zeros((*labels.shape, 4), dtype=np.uint8)
    rgba[..., :3] = palette_rgb()[labels]
    rgba[..., 3] = np.where(labels > 0, 255, 0)
    return rgba


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The RGB frame with the label map blended on top (background untouched)."""
    if image.shape[:2] != labels.shape:
        labels = cv2.resize(labels, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST)
    colours = palette_rgb()[labels].astype(np.float32)
    blended = image.astype(np.float32) * (1 - alpha) + colours * alpha
    return np.where((labels > 0)[..., None], blended, image).astype(np.uint8)


# ---------------------------------------------------------------- queue


def label_queue(
    engine: Engine,
    project_id: int,
    *,
    video_id: int | None = None,
    selection_id: int | None = None,
    include_done: bool = False,
    offset: int = 0,
    limit: int = 50,
) -> QueuePage:
    """Frames to label: a selection run's picks in rank order, else a video's (or project's) frames in order.

    Without `include_done`, frames whose masks are all submitted or reviewed are left out.
    """
    if offset < 0 or limit < 1:
        raise ValidationError(f"queue page: offset {offset} and limit {limit} must be >= 0 and >= 1")
    with session_scope(engine) as session:
        rows, total = footage.queue_frames(session, project_id, video_id=video_id, selection_id=selection_id,
                                           include_done=include_done, offset=offset, limit=limit)
        statuses = annotation_store.frame_statuses(session, [frame.id for frame, _, _ in rows])
    return QueuePage([QueueItem(frame, name, statuses[frame.id], rank) for frame, name, rank in rows], total)


def queue_neighbour(
    engine: Engine,
    project_id: int,
    frame_id: int,
    step: int,
    *,
    video_id: int | None = None,
    selection_id: int | None = None,
    include_done: bool = False,
) -> FrameInfo | None:
    """The queue frame right after (step=+1) or before (step=-1) `frame_id` in queue order, if any."""
    with session_scope(engine) as session:
        return footage.queue_neighbour(session, project_id, frame_id, step, video_id=video_id,
                                       selection_id=selection_id, include_done=include_done)


# ---------------------------------------------------------------- label classes


def label_classes(engine: Engine, project_id: int) -> list[LabelClassInfo]:
    """A project's label classes in display order."""
    with session_scope(engine) as session:
        return projects.list_label_classes(session, project_id)


def add_label_class(engine: Engine, project_id: int, name: str, *, actor: Actor | None = None) -> LabelClassInfo:
    """The project's label class called `name` (stripped), created if missing; LabelingError for an empty name."""
    access.require(engine, actor, "label", project_id)
    name = check_name("label class name", name, LABEL_CLASS_NAME_MAX)  # None was an AttributeError
    with session_scope(engine) as session:
        return projects.get_or_create_label_class(session, project_id, name)


def frame_project(engine: Engine, frame_id: int) -> tuple[str, int]:
    """(project name, video id) of a frame, e.g. to open a frame the Library asked for under its own project."""
    with session_scope(engine) as session:
        video = footage.get_video(session, footage.get_frame(session, frame_id).video_id)
        return projects.get_project_by_id(session, video.project_id).name, video.id


def frame_image(data_dir, frame: FrameInfo) -> np.ndarray:
    """The stored RGB frame, or LabelingError naming the frame (not the server's file: pages show this)."""
    try:
        return read_rgb(resolve_inside(data_dir, frame.image_path), error=LabelingError)
    except LabelingError:
        raise LabelingError(f"frame #{frame.index} (id {frame.id}): its stored image is missing or unreadable; "
                            "ingest the video again to restore it") from None


# ---------------------------------------------------------------- propagation from labeled frames

INLINE_PROPAGATION_MAX_FRAMES = 30
PROPAGATION_METHODS = ("auto", "backbone", "pixels", "copy")  # auto: the project's best propagator (services.models)


@dataclass(frozen=True)
class PropagationRequest:
    """How to propagate a video's human masks: method, backbone, how many recent keyframes, working size."""

    method: str = "auto"
    backbone: str = DEFAULT_BACKBONE
    checkpoint: str | None = None
    last_keyframes: int = 0
    short_side: int = 480


def human_keyframes(engine: Engine, video_id: int) -> list[tuple[int, Any]]:
    """(frame index, newest save time) of a video's frames with human masks, most recently labeled first."""
    with session_scope(engine) as session:
        return annotation_store.human_label_times(session, video_id)


def keyframe_spec(engine: Engine, video_id: int, last: int = 0) -> str | None:
    """The keyframes to propagate from: the `last` most recently labeled frames (None = all labeled ones)."""
    labeled = human_keyframes(engine, video_id)
    if not labeled:
        raise LabelingError(f"video {video_id}: no frame has a manual or imported mask yet; label a frame first")
    if last <= 0 or last >= len(labeled):
        return None
    return ",".join(str(i) for i in sorted(i for i, _ in labeled[:last]))


def propagation_params(engine: Engine, video_id: int, request: PropagationRequest) -> dict[str, Any]:
    """The params of a propagate job for one video (checked: method known, labeled frames exist)."""
    if request.method not in PROPAGATION_METHODS:
        raise LabelingError(f"propagation method: {request.method!r} is not one of {', '.join(PROPAGATION_METHODS)}")
    keyframes = keyframe_spec(engine, video_id, request.last_keyframes)
    return {"video_ids": [int(video_id)], "method": request.method, "backbone": request.backbone,
            "checkpoint": request.checkpoint or None, "keyframes": keyframes, "short_side": int(request.short_side)}


def submit_propagation(engine: Engine, video_id: int, request: PropagationRequest = PropagationRequest(), *,
                       actor: Actor | None = None):
    """Queue a propagate job for the video; returns the job."""
    from segloop.platform.services.library import submit_job

    params = propagation_params(engine, video_id, request)
    with session_scope(engine) as session:
        project_name = projects.get_project_by_id(session, footage.get_video(session, video_id).project_id).name
    return submit_job(engine, "propagate", params, project_name, actor=actor)


def propagate_inline(engine: Engine, settings, video_id: int, request: PropagationRequest = PropagationRequest(), *,
                     actor: Actor | None = None):
    """Propagate now in this process (short videos); drafts are stored as `propagated`. Returns the outcome."""
    with session_scope(engine) as session:
        project_id = footage.get_video(session, video_id).project_id
    access.require(engine, actor, "label", project_id)
    from segloop.platform.services.models import propagator_for, requested_propagator
    from segloop.platform.services.propagation import propagate_video
    from segloop.platform.vos import propagation as vos

    params = propagation_params(engine, video_id, request)
    config = vos.PropagationConfig(short_side=params["short_side"])
    fixed = requested_propagator(params["method"], params["backbone"], params["checkpoint"], config)
    featurizer, _ = propagator_for(video_id, config, fixed, settings=settings)
    return propagate_video(video_id, featurizer, config, params["keyframes"], settings=settings)
