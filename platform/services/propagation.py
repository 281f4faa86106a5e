"""Label propagation on DB videos: the labeling assist (drafts), the VOS model and an uncertainty signal.

Keyframes are the video's frames with human masks (source manual or imported). Frames without human
masks get `propagated` draft annotations; frames with human masks that were not used as keyframes
are scored (J&F, stored as metrics rows). Per-frame uncertainty goes to `frame_scores`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from segloop.platform.core.settings import Settings, load_settings
from segloop.platform.core.storage import resolve_inside
from segloop.platform.db.engine import get_engine, session_scope
from segloop.platform.db.stores import annotations as annotation_store
from segloop.platform.db.stores import footage, metrics, scores
from segloop.platform.db.stores.annotations import HUMAN_SOURCES
from segloop.platform.evaluation import metrics as evaluation
from segloop.platform.services import access
from segloop.platform.services.access import Actor
from segloop.platform.vos import propagation as vos

UNCERTAINTY_SIGNAL = "vos_uncertainty"
DISAGREEMENT_SIGNAL = "vos_fb_disagreement"
SAVE_EVERY = 32
CHECK_PASS_RECENT_FRAMES = 1  # the backward check pass reads its seed and the last frame only: a quarter of the cost


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


def human_annotations(session, video) -> dict[int, list]:
    """{frame index: its newest human-made annotations} of the frames that have any (nothing decoded)."""
    by_frame: dict[int, list] = {}
    for annotation in annotation_store.latest_annotations_for_video(session, video.id):
        if annotation.source in HUMAN_SOURCES:
            by_frame.setdefault(annotation.frame_id, []).append(annotation)
    index_of = {f.id: f.index for f in footage.list_frames(session, video.id)}
    return {index_of[frame_id]: items for frame_id, items in by_frame.items()}


def human_label_maps(session, video) -> dict[int, np.ndarray]:
    """{frame index: label map} of the frames whose newest masks are human-made."""
    return _label_maps(human_annotations(session, video), video)


def _label_maps(annotations: dict[int, list], video) -> dict[int, np.ndarray]:
    """{frame index: label map} painted from {frame index: annotations}."""
    return {index: annotation_store.label_map(items, video.stored_height, video.stored_width)
            for index, items in annotations.items()}


def _propagation_plan(video_id: int, keyframes: str | None, settings: Settings):
    """(video, frames, {frame index: human annotations}, chosen keyframes) of a video to propagate, or
    PropagationError / NotFoundError saying why it cannot be (no mask is decoded)."""
    with session_scope(get_engine(settings)) as session:
        video = footage.get_video(session, video_id)
        frames = footage.list_frames(session, video_id)
        human = human_annotations(session, video)
    if not human:
        raise vos.PropagationError(f"video {video_id} ({video.name}) has no human-annotated frame to propagate from")
    chosen = sorted(human) if keyframes is None else vos.parse_keyframes(keyframes, len(frames))
    missing = [i for i in chosen if i not in human]
    if missing:
        raise vos.PropagationError(f"video {video_id} ({video.name}): keyframe(s) {missing} have no human annotation")
    return video, frames, human, chosen


def require_propagatable(video_ids: Sequence[int], keyframes: str | None = None, *,
                         settings: Settings | None = None) -> None:
    """Check every video before propagating any (a later bad id failed after the earlier videos' drafts were
    stored): each exists, has human masks, and holds the `keyframes` asked for."""
    settings = settings or load_settings()
    for video_id in video_ids:
        _propagation_plan(video_id, keyframes, settings)


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
    video, frames, annotations, chosen = _propagation_plan(video_id, keyframes, settings)
    human = _label_maps(annotations, video)
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


# ---------------------------------------------------------------- spans propagated from the editor


class _CachedFrames(Sequence):
    """Frames lo..hi of a reader, each decoded once (the same array object every time it is asked for)."""

    def __init__(self, reader: Sequence[np.ndarray], indices: Sequence[int]) -> None:
        self._reader, self._indices, self._cache = reader, list(indices), {}

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, position: int) -> np.ndarray:
        if not 0 <= position < len(self._indices):
            raise IndexError(position)
        index = self._indices[position]
        if index not in self._cache:
            self._cache[index] = self._reader[index]
        return self._cache[index]

    def reversed_from(self, start: int) -> _CachedFrames:
        """Positions len-1 down to `start` of this window, sharing its decoded frames."""
        view = _CachedFrames(self._reader, self._indices[start:][::-1])
        view._cache = self._cache
        return view


class _MemoFeaturizer:
    """A featurizer that computes each frame's features once (frames are recognised by identity), so a second
    pass over the same frames, e.g. the backward check, costs only the label transfer."""

    def __init__(self, inner) -> None:
        self._inner, self._memo = inner, {}

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def __call__(self, frames):
        import torch

        missing = [f for f in frames if id(f) not in self._memo]
        if missing:
            for frame, features in zip(missing, self._inner(missing)):
                self._memo[id(frame)] = (frame, features)
        return torch.stack([self._memo[id(f)][1] for f in frames])


def span_bounds(count: int, index: int, direction: int, length: int) -> tuple[int, int]:
    """(lo, hi) of `length` frames after (direction +1) or before (-1) frame `index`, inside 0..count-1."""
    if direction not in (1, -1):
        raise vos.PropagationError(f"direction: {direction!r} is not +1 (forward) or -1 (backward)")
    if length < 1:
        raise vos.PropagationError(f"frames to propagate: {length} is not a positive number")
    return (index, min(index + length, count - 1)) if direction > 0 else (max(index - length, 0), index)


def _open_end_check(window: _CachedFrames, masks: list[np.ndarray], first: int, featurizer,
                    config: vos.PropagationConfig) -> dict[int, float]:
    """{position: disagreement} of the frames after position `first` (the last keyframe), propagated forward,
    against a backward pass seeded with the last frame's forward mask."""
    if len(masks) - first < 3:
        return {}
    view = window.reversed_from(first)
    check = replace(config, n_last=min(config.n_last, CHECK_PASS_RECENT_FRAMES))
    backward = {len(masks) - 1 - r.index: r.mask for r in vos.iter_propagate(view, {0: masks[-1]}, featurizer, check)}
    found = {p: vos.pass_disagreement(masks[p], backward[p]) for p in range(first + 1, len(masks) - 1)}
    found[len(masks) - 1] = found[len(masks) - 2]  # the seed of the backward pass: its neighbour's value
    return found


def _span_masks(frames_info, human: dict[int, np.ndarray], lo: int, hi: int, featurizer, config, settings,
                on_frame) -> tuple[list[np.ndarray], dict[int, float], list[int]]:
    """(masks of frames lo..hi, {position: disagreement}, keyframe indices) propagated from the human masks there."""
    keys = {i - lo: human[i] for i in range(lo, hi + 1) if i in human}
    if not keys:
        raise vos.PropagationError(f"frames {lo}..{hi} hold no human mask to propagate from")
    reader = vos.FrameFolder([resolve_inside(settings.data_dir, f.image_path) for f in frames_info[lo:hi + 1]])
    window = _CachedFrames(reader, range(len(reader)))
    model = featurizer if isinstance(featurizer, str) or hasattr(featurizer, "iter_propagate") \
        else _MemoFeaturizer(featurizer)
    masks, disagreement = [], {}
    for item in vos.iter_propagate(window, keys, model, config):
        masks.append(item.mask)
        disagreement[item.index] = float(item.confidence.get("disagreement", 0.0))
        if on_frame:
            on_frame(item.index + 1, len(window))
    if not isinstance(model, str):
        disagreement.update(_open_end_check(window, masks, max(keys), model, config))
        head = min(keys)
        if head >= 2:
            flipped = _CachedFrames(reader, range(head, -1, -1))
            flipped._cache = window._cache
            back = _open_end_check(flipped, masks[head::-1], 0, model, config)
            disagreement.update({head - p: v for p, v in back.items()})
    return masks, disagreement, sorted(i + lo for i in keys)


def _video_span(video_id: int, lo: int, hi: int, settings: Settings):
    """(engine, video, frames, human label maps) of a video, after checking lo..hi is inside it."""
    engine = get_engine(settings)
    with session_scope(engine) as session:
        video = footage.get_video(session, video_id)
        frames = footage.list_frames(session, video_id)
        human = human_label_maps(session, video)
    if not 0 <= lo <= hi < len(frames):
        raise vos.PropagationError(f"video {video.name}: frames {lo}..{hi} are outside 0..{len(frames) - 1}")
    return engine, video, frames, human


def span_masks(video_id: int, lo: int, hi: int, featurizer, config: vos.PropagationConfig | None = None, *,
               settings: Settings | None = None) -> list[np.ndarray]:
    """The masks `propagate_window` would store for frames lo..hi (human frames keep theirs); nothing is saved."""
    settings = settings or load_settings()
    _, _, frames, human = _video_span(video_id, lo, hi, settings)
    return _span_masks(frames, human, lo, hi, featurizer, config or vos.PropagationConfig(), settings, None)[0]


def propagate_window(
    video_id: int,
    lo: int,
    hi: int,
    featurizer,
    config: vos.PropagationConfig | None = None,
    *,
    settings: Settings | None = None,
    on_frame: Callable[[int, int], None] | None = None,
    actor: Actor | None = None,
) -> VideoPropagation:
    """Propagate the human masks among frames lo..hi to that span's other frames (stored as `propagated` drafts).

    Each draft's confidence is the disagreement of a forward and a backward pass: between two keyframes both
    passes exist; past the span's last (or before its first) keyframe, a check pass runs back from the span's
    far end. Frame features are computed once for both passes.
    """
    settings = settings or load_settings()
    engine, video, frames, human = _video_span(video_id, lo, hi, settings)
    access.require(engine, actor, "label", video.project_id)
    try:
        masks, disagreement, keyframes = _span_masks(frames, human, lo, hi, featurizer,
                                                     config or vos.PropagationConfig(), settings, on_frame)
    except vos.PropagationError as exc:
        raise vos.PropagationError(f"video {video.name}: {exc}") from None
    result = VideoPropagation(video_id, video.name, keyframes)
    drafted = [p for p in range(len(masks)) if lo + p not in human]
    object_ids = sorted({int(v) for k in keyframes for v in np.unique(human[k]) if v})
    result.drafts = _save_drafts(engine, [(frames[lo + p].id, masks[p]) for p in drafted], object_ids)
    with session_scope(engine) as session:
        scores.add_frame_scores(session, DISAGREEMENT_SIGNAL,
                                {frames[lo + p].id: disagreement.get(p, 0.0) for p in drafted})
    result.scores = {"disagreement_mean": float(np.mean([disagreement.get(p, 0.0) for p in drafted] or [0.0]))}
    return result


@dataclass(frozen=True)
class PropagatorPick:
    """The propagator the editor uses on a video: the project's best (services.models), and why."""

    project_id: int
    name: str
    reason: str
    encoder_id: int | None
    vos_id: int | None
    short_side: int = 480

    def describe(self) -> str:
        """A one-line description for the page."""
        model = {"encoder": f"pretrained encoder (checkpoint {self.encoder_id})",
                 "vos_model": f"memory VOS model (checkpoint {self.vos_id})", "pixels": "raw colour (pixels)"}
        return f"{model.get(self.name, self.name)}: {self.reason}"


def pick_propagator(video_id: int, short_side: int = 480, *, settings: Settings | None = None) -> PropagatorPick:
    """The video's best propagator by its stored self-validation, else the project's default (nothing is run)."""
    from segloop.platform.services import models

    engine = get_engine(settings or load_settings())
    with session_scope(engine) as session:
        project_id = footage.get_video(session, video_id).project_id
    found = models.project_models(project_id, engine)
    choice = models.stored_choice(video_id, found, engine)
    return PropagatorPick(project_id, choice.propagator, choice.reason, found.encoder.id if found.encoder else None,
                          found.vos.id if found.vos else None, short_side)


def build_propagator(pick: PropagatorPick, *, settings: Settings | None = None):
    """The featurizer (or learned propagator) a pick stands for, loaded once per call."""
    from segloop.platform.services import models

    found = models.project_models(pick.project_id, get_engine(settings or load_settings()))
    return models.make_propagator(found, pick.name, editor_config(pick.short_side))


def editor_config(short_side: int = 480) -> vos.PropagationConfig:
    """The propagation settings of the editor (the protocol's defaults at the given working size)."""
    return vos.PropagationConfig(short_side=short_side)


def propagate_from_frame(video_id: int, index: int, direction: int, length: int, featurizer, short_side: int = 480,
                         *, settings: Settings | None = None,
                         on_frame: Callable[[int, int], None] | None = None,
                         actor: Actor | None = None) -> VideoPropagation:
    """Propagate from frame `index` `length` frames forward (+1) or backward (-1): drafts for that span."""
    settings = settings or load_settings()
    with session_scope(get_engine(settings)) as session:
        count = footage.get_video(session, video_id).frame_count
    lo, hi = span_bounds(count, index, direction, length)
    return propagate_window(video_id, lo, hi, featurizer, editor_config(short_side),
                            settings=settings, on_frame=on_frame, actor=actor)
