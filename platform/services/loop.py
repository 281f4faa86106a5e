"""One round of the active-learning loop on a DB project: the one implementation behind `segloop demo`,
`segloop loop round`, the `loop_round` job and `segloop bench active-learning`.

The steps, in order:
1. embeddings: the newest embedding set made with the round's backbone and weights that covers every frame
   is reused; otherwise every frame is embedded;
2. select: a strategy picks `budget` frames under the constraints (stored as a selection run);
3. label: a simulated annotator (`oracle.label_selection`, which reads only the picked frames' ground truth)
   labels the picks; without an oracle the round stops here and waits for humans on the Label page;
4. propagate (when `RoundConfig.propagation` is set): each labelled video's human masks are propagated to its
   other frames and scored (J&F) against the ground truth; the per-frame propagation uncertainty is stored;
5. train (when `RoundConfig.train`): a VSS head is fine-tuned on every labelled frame, scored (mIoU) on the
   frames nobody labelled, and every frame is predicted (per-frame uncertainty for the next round's
   uncertainty or hybrid selection).
Recorded: the selection run, the `vss` checkpoint (params: round, selection id, strategy, picked frame ids)
and metrics rows (scope "round", key "round-N"); the next round's number follows from those rows.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segloop.platform.core.backbones import DEFAULT_BACKBONE
from segloop.platform.core.davis import masks_root
from segloop.platform.core.image import read_rgb
from segloop.platform.core.settings import Settings, load_settings
from segloop.platform.db.engine import get_engine, session_scope
from segloop.platform.db.entities import EmbeddingSetInfo
from segloop.platform.db.stores import artifacts, footage, metrics, projects, selections
from segloop.platform.vos.propagation import PropagationConfig
from segloop.platform.vss.head import VSSConfig

Progress = Callable[[float, str], None]
ROUND_SCOPE = "round"


@dataclass
class RoundConfig:
    """Settings of one round (defaults run in a minute or two on a 2-core CPU for a small project)."""

    strategy: str = "kcenter"
    budget: int = 8
    strategy_params: dict[str, Any] = field(default_factory=dict)
    max_per_video: int | None = None
    min_gap_frames: int = 0
    backbone: str = DEFAULT_BACKBONE
    pretrained: str | None = None  # weights file of the backbone (None: random init)
    pretrained_id: int | None = None  # the DB checkpoint those weights come from, recorded with what they make
    short_side: int = 192
    embed_img_size: int = 112
    vss: VSSConfig = field(default_factory=VSSConfig)
    train: bool = True  # fine-tune, score and predict a VSS head after labelling
    propagation: PropagationConfig | None = None  # also propagate each labelled video's masks and score J&F
    out_root: Path | None = None  # fine-tuning writes to <out_root>/round-N (default runs/finetune/<project>)


@dataclass
class RoundResult:
    """What a round did; `checkpoint_id` is None when it stopped before training (or trains nothing)."""

    round: int
    selection_id: int | None  # None when there was nothing left to pick (no run is stored)
    picked: list[int]
    labeled_frames: int
    checkpoint_id: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    status: str = "done"  # done | awaiting labels | nothing to label
    embedding_set_id: int | None = None
    newly_labeled: int = 0
    trained_on: int = 0
    evaluated_on: int = 0
    propagation: list[dict[str, Any]] = field(default_factory=list)  # per labelled video: name, keyframes, scores
    note: str = ""  # why nothing was picked, or what the round waits for


class RoundObserver:
    """How a caller follows a round while it runs; this default shows nothing."""

    def step(self, name: str, message: str) -> None:
        """A step starts: embed, select, label, propagate or train."""

    def selected(self, selection_id: int) -> None:
        """This round's picks are stored."""

    def propagated(self, videos: list[dict[str, Any]], unlabelled: int) -> None:
        """Propagation scores per labelled video, and how many videos had no labels to propagate."""

    @contextmanager
    def task(self, label: str) -> Iterator[Progress]:
        """Progress of one long task (embedding, one video's propagation, fine-tuning)."""
        yield lambda fraction, message: None


STEP_SPANS = {"embed": (0.0, 0.05), "select": (0.05, 0.1), "label": (0.1, 0.15), "propagate": (0.15, 0.2),
              "train": (0.2, 0.95)}


class ProgressObserver(RoundObserver):
    """Reports a round as overall (fraction, message) progress: the CLI's bar, a job's progress row."""

    def __init__(self, progress: Progress | None, number: int = 0) -> None:
        self.progress = progress or (lambda fraction, message: None)
        self.number, self.span = number, (0.0, 0.0)

    def step(self, name: str, message: str) -> None:
        """Report the step's start."""
        self.span = STEP_SPANS[name]
        self.progress(self.span[0], f"round {self.number}: {message}")

    @contextmanager
    def task(self, label: str) -> Iterator[Progress]:
        """Map a task's own fraction into its step's span."""
        start, end = self.span
        yield lambda fraction, message: self.progress(start + (end - start) * fraction,
                                                      f"round {self.number}: {label} {message}")


def next_round_number(project: str, settings: Settings) -> int:
    """1 + the highest round recorded in the project's round metrics."""
    with session_scope(get_engine(settings)) as session:
        info = projects.get_project(session, project)
        rows = metrics.list_metrics(session, project_id=info.id)
    rounds = [int(m.scope_key.removeprefix("round-")) for m in rows
              if m.scope == ROUND_SCOPE and m.scope_key.removeprefix("round-").isdigit()]
    return max(rounds, default=0) + 1


def reusable_embeddings(project: str, config: RoundConfig, settings: Settings) -> EmbeddingSetInfo | None:
    """The newest embedding set made with the round's backbone and weights that covers every frame, if any."""
    with session_scope(get_engine(settings)) as session:
        info = projects.get_project(session, project)
        sets = artifacts.list_embedding_sets(session, info.id)
        frames = footage.count_frames(session, info.id)
    weights = str(config.pretrained or "")
    for candidate in sets:
        same_weights = (candidate.checkpoint_id == config.pretrained_id if config.pretrained_id is not None
                        else str(candidate.params.get("checkpoint", "")) == weights)
        if candidate.backbone == config.backbone and same_weights and candidate.count == frames:
            return candidate
    return None


def ensure_embeddings(project: str, config: RoundConfig, settings: Settings,
                      observer: RoundObserver | None = None) -> EmbeddingSetInfo:
    """The reusable embedding set of the project, or a new one with the round's backbone and weights."""
    from segloop.platform.services.embedding import embed_project

    observer = observer or RoundObserver()
    reused = reusable_embeddings(project, config, settings)
    if reused is not None:
        observer.step("embed", f"embeddings: reusing embedding set {reused.id}")
        return reused
    observer.step("embed", f"embed every frame with {config.backbone}")
    with observer.task("embed") as report:
        return embed_project(project, config.backbone, config.pretrained, img_size=config.embed_img_size,
                             checkpoint_id=config.pretrained_id, settings=settings, progress=report)


ROUND_KEY = "loop_round"  # stored with a round's selection run: the round it picks for


def round_selection(project: str, number: int, settings: Settings) -> tuple[int, list[int]] | None:
    """(selection run id, picked frame ids) of round `number`'s selection when the round was stopped before its
    metrics were recorded (awaiting labels, interrupted): rerunning it picked another batch each time."""
    with session_scope(get_engine(settings)) as session:
        info = projects.get_project(session, project)
        for run in selections.list_selections(session, info.id):  # newest first
            if (run.params or {}).get(ROUND_KEY) == number:
                return run.id, selections.picked_frame_ids(session, run.id, except_status="rejected")
    return None


def unlabeled_frames(project: str, frame_ids: list[int], settings: Settings) -> list[int]:
    """Those of `frame_ids` that have no human mask yet."""
    from segloop.platform.services.selection import labeled_frame_ids

    with session_scope(get_engine(settings)) as session:
        labeled = labeled_frame_ids(session, projects.get_project(session, project).id)
    return [frame_id for frame_id in frame_ids if frame_id not in labeled]


def round_folder(out_root: Path, number: int, settings: Settings) -> Path:
    """The fine-tune folder of round `number`: `round-N` (an interrupted training there resumes), or `round-N-2`, ...
    when `round-N` already holds a registered model (a round stopped after its fine-tune, while predicting: the rerun
    was refused for good, jamming the loop)."""
    for attempt in range(1, 1000):
        folder = out_root / (f"round-{number}" if attempt == 1 else f"round-{number}-{attempt}")
        with session_scope(get_engine(settings)) as session:
            if not artifacts.checkpoints_under(session, str(folder.resolve())):
                return folder
    raise ValueError(f"{out_root}: round {number} has 999 registered fine-tune folders; give another out_root")


def require_ground_truth(project: str, oracle, settings: Settings) -> None:
    """OracleError unless the simulated annotator holds masks for every video of the project."""
    with session_scope(get_engine(settings)) as session:
        videos = footage.list_videos(session, projects.get_project(session, project).id)
    oracle.require([video.name for video in videos])


def run_round(project: str, config: RoundConfig, oracle=None, *, settings: Settings | None = None,
              job_id: int | None = None, progress: Progress | None = None,
              observer: RoundObserver | None = None) -> RoundResult:
    """Embed (or reuse), select, label (oracle) or stop for humans, propagate and/or fine-tune; all recorded."""
    from segloop.platform.services.finetuning import load_project
    from segloop.platform.services.oracle import label_selection
    from segloop.platform.services.selection import NothingToPick, run_selection
    from segloop.selectors.constraints import Constraints

    settings = settings or load_settings()
    if oracle is not None:
        require_ground_truth(project, oracle, settings)
    number = next_round_number(project, settings)
    observer = observer or ProgressObserver(progress, number)
    embedding_set = ensure_embeddings(project, config, settings, observer)
    pending = round_selection(project, number, settings)  # a rerun continues the round: it picks nothing new
    if pending is None or not pending[1]:  # (picks the oracle could not label were freed: pick again)
        observer.step("select", f"select {config.budget} frames to label with {config.strategy!r}")
        constraints = Constraints(budget=config.budget, max_per_video=config.max_per_video,
                                  min_gap_frames=config.min_gap_frames)
        try:
            run = run_selection(project, config.strategy, constraints, config.strategy_params, embedding_set.id,
                                settings=settings, job_id=job_id, allow_empty=False, record={ROUND_KEY: number})
        except NothingToPick as exc:  # no empty run is stored: it would be a queue with nothing in it
            return RoundResult(number, None, [], len(load_project(project, settings).labeled()),
                               status="nothing to label", embedding_set_id=embedding_set.id, note=str(exc))
        selection_id, picked = run.selection.id, [item.frame_id for item in run.items]
    else:
        selection_id, picked = pending
        observer.step("select", f"round {number} picked its frames before (selection run {selection_id}): "
                                "continuing it")
    observer.selected(selection_id)
    result = RoundResult(number, selection_id, picked, 0, embedding_set_id=embedding_set.id)
    unlabeled = unlabeled_frames(project, picked, settings)
    if oracle is None and unlabeled:
        result.status = "awaiting labels"
        result.labeled_frames = len(load_project(project, settings).labeled())
        result.note = (f"{len(unlabeled)} of the round's {len(picked)} picked frames have no human mask yet: label "
                       "them, then run the round again to continue it")
        return result
    if oracle is not None and unlabeled:
        observer.step("label", f"label the picked frames (simulated annotator reading {oracle.root})")
        result.newly_labeled = label_selection(selection_id, oracle, settings, only=unlabeled)
    extra = {"round": number, "selection_id": selection_id, "strategy": config.strategy, "picked_frame_ids": picked}
    evaluate_labels(project, number, config, oracle, result, settings=settings, job_id=job_id, observer=observer,
                    extra_params=extra)
    return result


def evaluate_labels(project: str, number: int, config: RoundConfig, oracle, result: RoundResult, *,
                    settings: Settings, job_id: int | None = None, observer: RoundObserver | None = None,
                    extra_params: dict | None = None) -> RoundResult:
    """The round's steps after labelling: propagate and/or fine-tune + predict, then the round's metrics rows."""
    from segloop.platform.services.finetuning import finetune_vss_project, load_project, predict_project

    observer = observer or RoundObserver()
    if config.propagation is not None:
        result.propagation = propagate_labels(project, config, settings, observer, oracle, job_id=job_id)
        scored = [video["scores"]["J&F"] for video in result.propagation if video["scores"]]
        if scored:
            result.metrics["J&F"] = sum(scored) / len(scored)
    frames = load_project(project, settings)
    result.labeled_frames = len(frames.labeled())
    if config.train:
        observer.step("train", f"fine-tune a segmentation head on the labelled frames ({config.backbone}), "
                               "predict every frame, score mIoU")
        out_root = config.out_root or settings.runs_dir / "finetune" / project
        with observer.task("fine-tune") as report:
            trained = finetune_vss_project(
                project, round_folder(Path(out_root), number, settings), pretrained=config.pretrained,
                backbone=config.backbone,
                short_side=config.short_side, config=config.vss, reference=oracle_reference(oracle, frames, settings),
                settings=settings, job_id=job_id, extra_params=extra_params, progress=report)
        predict_project(project, trained.checkpoint_id, settings=settings, job_id=job_id)
        result.checkpoint_id, result.trained_on, result.evaluated_on = (trained.checkpoint_id, trained.trained_on,
                                                                        trained.evaluated_on)
        result.metrics.update(trained.metrics)
    rows = [(name, value) for name, value in result.metrics.items() if ":" not in name]
    rows.append(("labeled_frames", float(result.labeled_frames)))
    with session_scope(get_engine(settings)) as session:
        info = projects.get_project(session, project)
        metrics.add_metrics(session, [(ROUND_SCOPE, f"round-{number}", name, value) for name, value in rows],
                            job_id=job_id, project_id=info.id, checkpoint_id=result.checkpoint_id, step=number)
    return result


def propagate_labels(project: str, config: RoundConfig, settings: Settings, observer: RoundObserver | None = None,
                     oracle=None, keyframes: str | None = None, job_id: int | None = None) -> list[dict[str, Any]]:
    """Propagate each labelled video's human masks (or its `keyframes` among them) to its other frames; J&F against
    the oracle's ground truth on every other frame, or without an oracle against the human masks not used."""
    from dataclasses import asdict

    from segloop.platform.services.propagation import human_annotations, propagate_video
    from segloop.platform.vos import propagation as vos

    observer = observer or RoundObserver()
    prop = config.propagation or PropagationConfig()
    featurizer = vos.make_featurizer("backbone", config.backbone, vos.encoder_source(config.pretrained), prop)
    observer.step("propagate", f"propagate the labels to every frame ({featurizer.name}, short side "
                               f"{prop.short_side}) and score J&F")
    with session_scope(get_engine(settings)) as session:
        videos = footage.list_videos(session, projects.get_project(session, project).id)
        labelled = [v for v in videos if human_annotations(session, v) and (oracle is None or oracle.covers(v.name))]
    out = []
    for video in labelled:
        reference = None if oracle is None else video_reference(oracle, video, settings)
        with observer.task(video.name) as report:
            done = propagate_video(video.id, featurizer, prop, keyframes, settings=settings, reference=reference,
                                   job_id=job_id, checkpoint_id=config.pretrained_id,
                                   on_frame=lambda count, total: report(count / total, f"{count}/{total}"))
        out.append(asdict(done))
    observer.propagated(out, len(videos) - len(labelled))
    return out


def video_reference(oracle, video, settings: Settings):
    """frame index -> the oracle's ground-truth label map (all objects) of one DB video at its stored size."""
    with session_scope(get_engine(settings)) as session:
        sources = [f.source_index for f in footage.list_frames(session, video.id)]
    return lambda index: oracle.label_map(video.name, sources[index], (video.stored_width, video.stored_height))


def oracle_reference(oracle, frames, settings: Settings):
    """(video name, source index) -> binary class map from the oracle's ground truth at the stored size (None for a
    video the oracle has no ground truth for); None without an oracle."""
    import numpy as np

    if oracle is None:
        return None
    sizes = {name: read_rgb(paths[0]).shape[:2] for name, paths in frames.videos.items()}

    def reference(name: str, source_index: int):
        if not oracle.covers(name):
            return None
        height, width = sizes[name]
        labels = oracle.label_map(name, source_index, (width, height))
        return np.where(labels == 255, 255, labels > 0).astype(np.uint8)

    return reference


def oracle_from(path: str | Path | None):
    """A DavisOracle for a ground-truth folder (`<dir>/<video>/%05d.png` or a DAVIS root), or None."""
    if path is None:
        return None
    from segloop.platform.services.oracle import DavisOracle

    root = masks_root(path)
    if not root.is_dir():
        raise ValueError(f"--oracle: {path} is not a folder")
    return DavisOracle(root)
