"""Label propagation on DB videos: the labeling assist (drafts), the VOS model and an uncertainty signal.

Keyframes are the video's frames with human masks (source manual or imported). Frames without human
masks get `propagated` draft annotations; frames with human masks that were not used as keyframes
are scored (J&F, stored as metrics rows). Per-frame uncertainty goes to `frame_scores`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from segloop.platform.core.settings import Settings, load_settings
from segloop.platform.core.storage import resolve_inside
from segloop.platform.db.engine import get_engine, session_scope
from segloop.platform.db.stores import annotations as annotation_store
from segloop.platform.db.stores import footage, metrics, scores
from segloop.platform.db.stores.annotations import HUMAN_SOURCES
from segloop.platform.evaluation import metrics as evaluation
from segloop.platform.vos import propagation as vos

UNCERTAINTY_SIGNAL = "vos_uncertainty"
DISAGREEMENT_SIGNAL = "vos_fb_disagreement"
SAVE_EVERY = 32


@dataclass
class VideoPropagation:
    """What a propagation run on one DB video did."""

    video_id: int
    video_name: str
    keyframes: list[int]
    drafts: int = 0
    scores: dict[str, float] = field(default_factory=dict)
    scored_frames: int = 0


class _SparseMasks(Sequence):
    """A length-`count` sequence that only holds the label maps of some frames (for scoring)."""

    def __init__(self, count: int, masks: dict[int, np.ndarray]):
        self._count, self._masks = count, masks

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: int) -> np.ndarray:
        return self._masks[index]


def human_label_maps(session, video) -> dict[int, np.ndarray]:
    """{frame index: label map} of the frames whose newest masks are human-made."""
    by_frame: dict[int, list] = {}
    for annotation in annotation_store.latest_annotations_for_video(session, video.id):
        by_frame.setdefault(annotation.frame_id, []).append(annotation)
    index_of = {f.id: f.index for f in footage.list_frames(session, video.id)}
    maps = {}
    for frame_id, items in by_frame.items():
        if any(a.source in HUMAN_SOURCES for a in items):
            human = [a for a in items if a.source in HUMAN_SOURCES]
            maps[index_of[frame_id]] = annotation_store.label_map(human, video.stored_height, video.stored_width)
    return maps


def propagate_video(
    video_id: int,
    featurizer,
    config: vos.PropagationConfig | None = None,
    keyframes: str | None = None,
    *,
    settings: Settings | None = None,
    job_id: int | None = None,
    checkpoint_id: int | None = None,
    on_frame: Callable[[int, int], None] | None = None,
    reference: Callable[[int], np.ndarray] | None = None,
) -> VideoPropagation:
    """Propagate a DB video's human masks (all, or the `keyframes` spec among them) to its other frames.

    Scores go against the human masks of non-keyframes, or, with `reference(frame index) -> label map`
    (ground truth outside the DB, e.g. a simulated annotator), against it on every non-keyframe.
    """
    settings = settings or load_settings()
    engine = get_engine(settings)
    with session_scope(engine) as session:
        video = footage.get_video(session, video_id)
        frames = footage.list_frames(session, video_id)
        human = human_label_maps(session, video)
    if not human:
        raise vos.PropagationError(f"video {video_id} ({video.name}) has no human-annotated frame to propagate from")
    chosen = sorted(human) if keyframes is None else vos.parse_keyframes(keyframes, len(frames))
    missing = [i for i in chosen if i not in human]
    if missing:
        raise vos.PropagationError(f"video {video_id} ({video.name}): keyframe(s) {missing} have no human annotation")
    reader = vos.FrameFolder([resolve_inside(settings.data_dir, f.image_path) for f in frames])
    result = VideoPropagation(video_id, video.name, chosen)
    predicted: dict[int, np.ndarray] = {}
    uncertainty: dict[int, float] = {}
    disagreement: dict[int, float] = {}
    pending: list[tuple[int, np.ndarray]] = []
    object_ids = sorted({int(v) for i in chosen for v in np.unique(human[i]) if v})
    for item in vos.iter_propagate(reader, {i: human[i] for i in chosen}, featurizer, config):
        frame = frames[item.index]
        confidence = item.confidence
        certain = confidence.get("fg_mean_max_prob") or confidence.get("mean_max_prob", 1.0)
        uncertainty[frame.id] = 0.0 if item.index in chosen else float(1.0 - certain)
        disagreement[frame.id] = float(confidence.get("disagreement", 0.0))
        if item.index not in chosen and (reference is not None or item.index in human):
            predicted[item.index] = item.mask
        if item.index not in human:
            pending.append((frame.id, item.mask))
        if len(pending) >= SAVE_EVERY:
            result.drafts += _save_drafts(engine, pending, object_ids)
            pending = []
        if on_frame:
            on_frame(item.index + 1, len(frames))
    result.drafts += _save_drafts(engine, pending, object_ids)
    with session_scope(engine) as session:
        scores.add_frame_scores(session, UNCERTAINTY_SIGNAL, uncertainty, job_id=job_id, checkpoint_id=checkpoint_id)
        scores.add_frame_scores(session, DISAGREEMENT_SIGNAL, disagreement, job_id=job_id, checkpoint_id=checkpoint_id)
    if predicted:
        truth = {i: reference(i) for i in predicted} if reference is not None else human
        result.scores, result.scored_frames = _score(video, predicted, truth, len(frames), object_ids), len(predicted)
        with session_scope(engine) as session:
            metrics.add_metrics(session, [("video", video.name, k, v) for k, v in result.scores.items()],
                                job_id=job_id, project_id=video.project_id, checkpoint_id=checkpoint_id)
    return result


def _save_drafts(engine, pending: list[tuple[int, np.ndarray]], object_ids: list[int]) -> int:
    """Store propagated label maps as draft annotations (one per keyframe object, empty ones too)."""
    with session_scope(engine) as session:
        for frame_id, mask in pending:
            for object_id in object_ids:
                annotation_store.save_annotation(session, frame_id, object_id, mask == object_id, "propagated",
                                                 status="draft", author="propagation")
    return len(pending)


def _score(video, predicted: dict[int, np.ndarray], human: dict[int, np.ndarray], count: int,
           object_ids: list[int]) -> dict[str, float]:
    """J&F, J and F of the propagated masks on human-annotated frames that were not keyframes."""
    objects = evaluation.evaluate_sequence(
        video.name, _SparseMasks(count, predicted), _SparseMasks(count, human), frames=sorted(predicted),
        skip_first_last=False, object_ids=object_ids,
    )
    report = evaluation.VOSReport(objects)
    return report.sequence_scores(video.name)
