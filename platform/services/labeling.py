"""Labeling services for the web UI: the queue, a frame's editable label map, brush/polygon edits, saving.

A frame's labels are edited as one uint8 label map (value = object id). Saving turns it back into one
mask per object and stores a new version only for objects whose mask or class changed, refusing the
whole save when any object was saved by someone else since the editor loaded it (optimistic locking).
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from PIL import Image
from sqlalchemy import Engine

from segloop.platform.core.backbones import DEFAULT_BACKBONE
from segloop.platform.core.image import read_rgb
from segloop.platform.core.masks import davis_palette
from segloop.platform.core.storage import resolve_inside
from segloop.platform.db.engine import session_scope
from segloop.platform.db.entities import FrameInfo, LabelClassInfo, VideoInfo
from segloop.platform.db.stores import annotations as annotation_store
from segloop.platform.db.stores import footage, projects
from segloop.platform.db.stores import reviews as review_store
from segloop.platform.db.stores.annotations import ConflictError
from segloop.platform.services import access
from segloop.platform.services.access import Actor

TOOLS = ("brush", "polygon")
MAX_OPS = 5_000
MAX_POINTS_PER_OP = 100_000
MAX_RADIUS = 500.0
MAX_MASK_UPLOAD_BYTES = 64 * 1024 * 1024


class LabelingError(ValueError):
    """Edits, masks or requests the labeling service cannot use; the message says which and why."""


@dataclass(frozen=True)
class Edit:
    """One brush stroke or polygon in image pixel coordinates; `erase` clears every object under it."""

    tool: str
    object_id: int
    points: tuple[tuple[float, float], ...]
    radius: float = 0.0
    erase: bool = False


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


# ---------------------------------------------------------------- edits


def parse_edits(payload: Any) -> list[Edit]:
    """Edits from the canvas JSON ({'ops': [...]} or a list), or LabelingError naming the bad field."""
    ops = payload.get("ops") if isinstance(payload, dict) else payload
    if ops is None:
        return []
    if not isinstance(ops, list):
        raise LabelingError(f"edits: expected a list of operations, got {type(ops).__name__}")
    if len(ops) > MAX_OPS:
        raise LabelingError(f"edits: {len(ops)} operations, at most {MAX_OPS} allowed")
    return [_parse_edit(i, op) for i, op in enumerate(ops)]


def _parse_edit(position: int, op: Any) -> Edit:
    """One edit from its JSON object."""
    where = f"edits[{position}]"
    if not isinstance(op, dict):
        raise LabelingError(f"{where}: expected an object, got {type(op).__name__}")
    tool = op.get("tool")
    if tool not in TOOLS:
        raise LabelingError(f"{where}.tool: {tool!r} is not one of {', '.join(TOOLS)}")
    object_id = op.get("object_id")
    if isinstance(object_id, bool) or not isinstance(object_id, int) or not 1 <= object_id <= 255:
        raise LabelingError(f"{where}.object_id: {object_id!r} is not an integer in 1..255")
    points = op.get("points")
    if not isinstance(points, list) or not points or len(points) > MAX_POINTS_PER_OP:
        raise LabelingError(f"{where}.points: expected 1..{MAX_POINTS_PER_OP} [x, y] pairs")
    parsed = []
    for point in points:
        if not isinstance(point, (list, tuple)) or len(point) != 2 or not all(_is_finite_number(v) for v in point):
            raise LabelingError(f"{where}.points: {point!r} is not a finite [x, y] pair")
        parsed.append((float(point[0]), float(point[1])))
    radius = op.get("radius", 0.0)
    if tool == "brush" and (not isinstance(radius, (int, float)) or isinstance(radius, bool)
                            or not 0.5 <= radius <= MAX_RADIUS):
        raise LabelingError(f"{where}.radius: {radius!r} is not a number in 0.5..{MAX_RADIUS:g}")
    if tool == "polygon" and len(parsed) < 3:
        raise LabelingError(f"{where}.points: a polygon needs at least 3 points, got {len(parsed)}")
    return Edit(tool, object_id, tuple(parsed), float(radius) if tool == "brush" else 0.0, bool(op.get("erase", False)))


def _is_finite_number(value: Any) -> bool:
    """Whether a JSON value is a finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def rasterize(edit: Edit, height: int, width: int) -> np.ndarray:
    """The pixels an edit covers (bool, height×width): a round-capped stroke or a filled polygon."""
    canvas = np.zeros((height, width), dtype=np.uint8)
    points = np.round(np.asarray(edit.points, dtype=np.float64)).astype(np.int32)
    if edit.tool == "polygon":
        cv2.fillPoly(canvas, [points.reshape(-1, 1, 2)], 1)
        return canvas.astype(bool)
    radius = max(int(round(edit.radius)), 0)
    if len(points) > 1:
        cv2.polylines(canvas, [points.reshape(-1, 1, 2)], False, 1, thickness=max(2 * radius, 1), lineType=cv2.LINE_8)
    for x, y in points[[0, -1]] if len(points) > 1 else points:
        cv2.circle(canvas, (int(x), int(y)), radius, 1, thickness=-1)
    return canvas.astype(bool)


def apply_edits(labels: np.ndarray, edits: list[Edit]) -> np.ndarray:
    """A copy of the label map with the edits applied in order (paint sets the object id, erase sets 0)."""
    result = np.array(labels, dtype=np.uint8, copy=True)
    height, width = result.shape
    for edit in edits:
        covered = rasterize(edit, height, width)
        result[covered] = 0 if edit.erase else edit.object_id
    return result


# ---------------------------------------------------------------- loading and saving


def load_frame_labels(engine: Engine, frame_id: int) -> FrameLabels:
    """The frame, its video, and its label map from the newest annotation versions (the draft to edit)."""
    with session_scope(engine) as session:
        frame = footage.get_frame(session, frame_id)
        video = footage.get_video(session, frame.video_id)
        latest = annotation_store.latest_annotations(session, frame_id)
    labels = annotation_store.label_map(latest, video.stored_height, video.stored_width)
    return FrameLabels(
        frame=frame, video=video, labels=labels,
        versions={a.object_id: a.version for a in latest},
        classes={a.object_id: a.class_id for a in latest},
        statuses={a.object_id: a.status for a in latest},
        annotation_ids={a.object_id: a.id for a in latest},
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
) -> SaveOutcome:
    """Store changed objects as new versions; on submit / review also move unchanged objects to `status`.

    `loaded_versions` are the versions the editor started from; if any object of the frame has a
    newer version now, nothing is saved and ConflictError says which object changed. With an actor (or in
    the web UI), the actor must be allowed to label (review, for `reviewed`) the frame's project and is the author.
    """
    if status not in annotation_store.STATUSES:
        raise LabelingError(f"status: {status!r} is not one of {', '.join(annotation_store.STATUSES)}")
    actor = access.effective_actor(actor)
    if actor is not None:
        access.require_frame(engine, actor, "review" if status == "reviewed" else "label", frame_id)
        author = actor.name
    labels = np.asarray(labels)
    classes = classes or {}
    with session_scope(engine) as session:
        frame = footage.get_frame(session, frame_id)
        video = footage.get_video(session, frame.video_id)
        if labels.shape != (video.stored_height, video.stored_width):
            raise LabelingError(f"frame {frame_id}: label map is {labels.shape[1]}x{labels.shape[0]}, "
                                f"frame is {video.stored_width}x{video.stored_height}")
        latest = {a.object_id: a for a in annotation_store.latest_annotations(session, frame_id)}
        _check_not_stale(frame_id, latest, loaded_versions)
        saved: dict[int, int] = {}
        restatused: list[int] = []
        present = {int(v) for v in np.unique(labels) if v != 0}
        for object_id in sorted(present | set(latest)):
            mask = labels == object_id
            current = latest.get(object_id)
            class_id = classes.get(object_id, current.class_id if current else None)
            unchanged = (current is not None and current.class_id == class_id
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
    return SaveOutcome(saved, tuple(restatused))


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
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            mode, fmt = image.mode, image.format
            array = np.asarray(image)
    except (OSError, ValueError) as exc:
        raise LabelingError(f"{name}: not a readable image ({exc})") from None
    if fmt != "PNG":
        raise LabelingError(f"{name}: expected a PNG mask, got {fmt or 'an unknown format'}")
    labels = _labels_from_array(name, mode, array)
    if labels.shape != (height, width):
        raise LabelingError(f"{name}: mask is {labels.shape[1]}x{labels.shape[0]}, frame is {width}x{height}")
    return labels


def _labels_from_array(name: str, mode: str, array: np.ndarray) -> np.ndarray:
    """Object ids of a decoded mask image (same conventions as `masks.read_mask`)."""
    if mode == "P":
        return array.astype(np.uint8)
    if mode in ("RGB", "RGBA"):
        rgb = array[..., :3]
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])):
            raise LabelingError(f"{name}: colour PNG; expected a palette (P) or grayscale (L) mask")
        array, mode = rgb[..., 0], "L"
    if mode in ("L", "1", "I", "I;16"):
        values = np.unique(array)
        if mode == "1" or (set(values.tolist()) <= {0, 255} and 255 in values):
            return (array > 0).astype(np.uint8)
        if values.max(initial=0) > 255:
            raise LabelingError(f"{name}: object id {int(values.max())} out of range 0..255")
        return array.astype(np.uint8)
    raise LabelingError(f"{name}: unsupported mask image mode {mode}")


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
    if not name.strip():
        raise LabelingError("label class name: must not be empty")
    with session_scope(engine) as session:
        return projects.get_or_create_label_class(session, project_id, name.strip())


def frame_image(data_dir, frame: FrameInfo) -> np.ndarray:
    """The stored RGB frame, or LabelingError naming the missing file."""
    return read_rgb(resolve_inside(data_dir, frame.image_path), error=LabelingError)


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
    from segloop.platform.services.models import AUTO, video_propagator
    from segloop.platform.services.propagation import propagate_video
    from segloop.platform.vos import propagation as vos

    params = propagation_params(engine, video_id, request)
    config = vos.PropagationConfig(short_side=params["short_side"])
    if params["method"] == AUTO:
        featurizer, _ = video_propagator(video_id, config, settings=settings)
    else:
        featurizer = vos.make_featurizer(params["method"], params["backbone"], params["checkpoint"], config)
    return propagate_video(video_id, featurizer, config, params["keyframes"], settings=settings)
