"""Fine-tuning on a DB project: labeled frames in, checkpoints, metrics rows, predictions and uncertainty out.

VSS classes: 0 = background, then the project's label classes in order (class i + 1); a human mask
without a class (DAVIS imports, the simulated annotator) counts as the first class, named
"object" when the project has no label classes. Predictions go to
`$SEGLOOP_DATA_DIR/runs/predictions/<checkpoint-id>/<video-id>.npz` (uint8 probabilities at
stride 4, frame ids) and the per-frame uncertainty to `frame_scores` (vss_entropy_mean,
vss_entropy_p90, vss_margin) for the uncertainty selectors. A VSS head trained with the temporal module
(`segloop.platform.vss.temporal`) predicts through it; a VOS checkpoint (the memory model folder of
`finetune vos`) predicts by propagating each video's human masks (object probabilities at stride 4,
`vos_uncertainty` per frame). VSS scores: held-out frames (scope `overall`), and with `val_videos` whole
held-out videos (scope `held-out videos`); mIoU, temporal flicker and stability, with and without the
temporal module.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segloop.platform.core.backbones import DEFAULT_BACKBONE
from segloop.platform.core.settings import Settings, load_settings
from segloop.platform.core.storage import exclusive_use, resolve_inside
from segloop.platform.db.engine import get_engine, session_scope
from segloop.platform.db.stores import annotations as annotation_store
from segloop.platform.db.stores import artifacts, footage, metrics, projects, scores
from segloop.platform.db.stores.annotations import HUMAN_SOURCES
from segloop.platform.features.backbone import FeatureSpec, video_features
from segloop.platform.services.artifacts import require_fresh_out
from segloop.platform.vos.memory import save_memory_model, write_memory_settings
from segloop.platform.vos.propagation import FrameFolder
from segloop.platform.vss.head import FinetuneError, Sample, VSSConfig

Progress = Callable[[float, str], None]
Reference = Callable[[str, int], np.ndarray]


@dataclass
class ProjectFrames:
    """A project's videos: frame files, frame ids, source indices, sizes and the human class maps."""

    videos: dict[str, list[Path]] = field(default_factory=dict)
    frame_ids: dict[str, list[int]] = field(default_factory=dict)
    source_indices: dict[str, list[int]] = field(default_factory=dict)
    video_ids: dict[str, int] = field(default_factory=dict)
    labels: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)

    def labeled(self) -> list[tuple[str, int]]:
        """(video, index) of every frame with a human mask."""
        return [(v, i) for v, maps in self.labels.items() for i in sorted(maps)]


def is_main_process() -> bool:
    """Rank 0 under torchrun, or the only process: the one that saves and writes to the DB."""
    from segloop.pretrain import dist

    return dist.info().rank == 0


def load_project(project: str, settings: Settings, object_labels: bool = False) -> ProjectFrames:
    """Frames and human masks of a project: class maps (VSS) or object-id maps (`object_labels`, VOS)."""
    out = ProjectFrames()
    with session_scope(get_engine(settings)) as session:
        info = projects.get_project(session, project)
        label_classes = projects.list_label_classes(session, info.id)
        class_index = {c.id: position + 1 for position, c in enumerate(label_classes)}
        out.classes = ["background"] + ([c.name for c in label_classes] or ["object"])
        for video in footage.list_videos(session, info.id):
            frames = footage.list_frames(session, video.id)
            if not frames:
                continue
            key = video.name
            out.videos[key] = [resolve_inside(settings.data_dir, f.image_path) for f in frames]
            out.frame_ids[key] = [f.id for f in frames]
            out.source_indices[key] = [f.source_index for f in frames]
            out.video_ids[key] = video.id
            index_of = {f.id: f.index for f in frames}
            by_frame: dict[int, list] = {}
            for annotation in annotation_store.latest_annotations_for_video(session, video.id):
                by_frame.setdefault(annotation.frame_id, []).append(annotation)
            maps = {}
            for frame_id, items in by_frame.items():
                human = [a for a in items if a.source in HUMAN_SOURCES]
                if not human:
                    continue
                labels = np.zeros((video.stored_height, video.stored_width), dtype=np.uint8)
                for annotation in sorted(human, key=lambda a: a.object_id):
                    value = annotation.object_id if object_labels else class_index.get(annotation.class_id, 1)
                    labels[annotation_store.annotation_mask(annotation)] = value
                maps[index_of[frame_id]] = labels
            out.labels[key] = maps
    if not out.videos:
        raise FinetuneError(f"project {project!r} has no frames; ingest footage first")
    return out


def features_of(frames: ProjectFrames, spec: FeatureSpec, settings: Settings, progress: Progress | None = None):
    """Cached multi-layer features of every video of the project."""
    from segloop.platform.core.device import resolve_device

    return video_features(frames.videos, spec, settings.data_dir / "cache" / "features", resolve_device("auto"),
                          progress)


def split_validation(keys: list[tuple[str, int]], fraction: float, seed: int) -> tuple[list, list]:
    """(train, validation) split of labeled frames; no validation below 5 frames or with fraction 0."""
    if fraction <= 0 or len(keys) < 5:
        return keys, []
    order = np.random.default_rng(seed).permutation(len(keys))
    count = max(1, int(round(fraction * len(keys))))
    held = {int(i) for i in order[:count]}
    return [k for i, k in enumerate(keys) if i not in held], [k for i, k in enumerate(keys) if i in held]


@dataclass
class FinetuneResult:
    """What a fine-tuning run produced."""

    checkpoint_id: int
    path: str
    trained_on: int
    metrics: dict[str, float]
    evaluated_on: int = 0


def split_videos(frames: ProjectFrames, count: int, seed: int) -> list[str]:
    """`count` labelled videos held out whole (chosen by seed); at least one labelled video is left to train on."""
    if count <= 0:
        return []
    labelled = sorted(name for name, maps in frames.labels.items() if maps)
    if count >= len(labelled):
        raise FinetuneError(f"val_videos: {count} held-out videos leave no labelled video to train on "
                            f"(the project has {len(labelled)} labelled videos)")
    order = np.random.default_rng(seed).permutation(len(labelled))
    return sorted(labelled[int(i)] for i in order[:count])


def claims_out(train: Callable) -> Callable:
    """`train` run holding this machine's claim on its `out_dir` (FinetuneError when another run writes there: two
    runs would mix their training state and overwrite each other's weights); under torchrun the main process claims."""
    import functools
    import inspect
    import os

    signature = inspect.signature(train)

    @functools.wraps(train)
    def claimed(*args, **kwargs):
        out_dir = signature.bind(*args, **kwargs).arguments["out_dir"]
        if os.environ.get("RANK", "0") != "0":  # torchrun's other processes (the group is not set up yet)
            return train(*args, **kwargs)
        with exclusive_use(out_dir) as mine:
            if not mine:
                raise FinetuneError(f"--out {out_dir}: another run is writing there now; wait for it to end or give "
                                    "another folder")
            return train(*args, **kwargs)

    return claimed


@claims_out
def finetune_vss_project(project: str, out_dir: str | Path, *, pretrained: str | None = None,
                         backbone: str = DEFAULT_BACKBONE, short_side: int = 192,
                         config: VSSConfig = VSSConfig(), val_fraction: float = 0.2, val_videos: int = 0,
                         temporal=None, reference: Reference | None = None, extra_params: dict | None = None,
                         settings: Settings | None = None, job_id: int | None = None,
                         progress: Progress | None = None) -> FinetuneResult | None:
    """Train a VSS head on the project's human-labeled frames, register it, and score it on held-out frames
    (and on `val_videos` whole held-out videos).

    With `temporal` (a `TemporalConfig`) the temporal module is trained too (correspondence: the encoder of
    `pretrained`, raw colour without one), stored in the checkpoint, and every score is given with and
    without it. Under torchrun every process trains (gradients averaged); only rank 0 saves, registers and
    scores, the other ranks return None.

    Held out: with `reference(video, source index) -> class map or None` (a simulated annotator's ground
    truth; None for videos it does not cover) every frame without a human mask; otherwise a
    `val_fraction` of the labeled frames.
    """
    from segloop.platform.vss import head as vss

    settings = settings or load_settings()
    require_fresh_out(out_dir, settings)
    report = progress or (lambda fraction, message: None)
    frames = load_project(project, settings)
    held_videos = split_videos(frames, val_videos, config.seed)  # refused before minutes of feature extraction
    spec = FeatureSpec(backbone=backbone, weights=pretrained, short_side=short_side)
    feats = features_of(frames, spec, settings, lambda f, m: report(0.3 * f, m))
    keys = [(v, i) for v, i in frames.labeled() if v not in held_videos]
    train_keys, val_keys = split_validation(keys, 0 if reference else val_fraction, config.seed)
    samples = [Sample(v, i, frames.labels[v][i]) for v, i in train_keys]
    out_dir = Path(out_dir)
    trained = vss.train_vss(samples, feats, len(frames.classes), spec, config,
                            frame_paths=frames.videos, state_path=out_dir / "train_state.pt",
                            progress=lambda f, m: report(0.3 + 0.4 * f, m))
    if not is_main_process():
        return None
    temporal_params = {}
    if temporal is not None:
        from segloop.platform.vss.temporal import EncoderRef, train_temporal

        encoder = EncoderRef(pretrained, backbone if pretrained else None)
        trained.temporal = train_temporal(samples, feats, _readers(frames), len(frames.classes), spec, config,
                                          encoder, temporal, progress=lambda f, m: report(0.7 + 0.1 * f, m))
        temporal_params = {"temporal": {**temporal.as_dict(), "encoder": pretrained or "pixels"}}
    path = vss.save_vss(out_dir / "vss.pt", trained)
    labeled_ids = [frames.frame_ids[v][i] for v, i in train_keys]
    params = {"classes": frames.classes, "config": config.as_dict(), "spec": spec.as_dict(),
              "labeled_frame_ids": labeled_ids, "validation_frame_ids": [frames.frame_ids[v][i] for v, i in val_keys],
              "validation_videos": held_videos, "final_loss": float(np.mean(trained.losses[-10:])),
              **temporal_params, **(extra_params or {})}
    report(0.85, "evaluating")
    held_out = set(val_keys) | {(v, i) for v, i in frames.labeled() if v in held_videos}
    scored = held_out_frames(frames, val_keys, reference, exclude=held_videos)
    values, count = evaluate_vss_project(trained, feats, frames, scored, reference, held_out)
    if held_videos:
        whole = {name: _truth_indices(frames, name, reference) for name in held_videos}
        video_values, video_count = evaluate_vss_project(trained, feats, frames, whole, reference, held_out)
        values.update({(HELD_OUT_VIDEOS, key if scope == "overall" else f"{scope} {key}", name): v
                       for (scope, key, name), v in video_values.items()})
        count += video_count
    with session_scope(get_engine(settings)) as session:  # registered with its scores, once both exist: a run
        info = projects.get_project(session, project)      # stopped while evaluating resumes from its --out
        checkpoint = artifacts.add_checkpoint(session, "vss", backbone, str(path.resolve()), project_id=info.id,
                                              job_id=job_id, step=len(trained.losses), params=params)
        metrics.add_metrics(session, [(scope, key, name, v) for (scope, key, name), v in values.items()],
                            job_id=job_id, project_id=checkpoint.project_id, checkpoint_id=checkpoint.id)
    report(1.0, "done")
    summary = {name if scope == "overall" else f"{scope}:{key}:{name}": v for (scope, key, name), v in values.items()}
    return FinetuneResult(checkpoint.id, str(path), len(samples), summary, count)


HELD_OUT_VIDEOS = "held-out videos"
WITHOUT_TEMPORAL = "_without_temporal"


def _readers(frames: ProjectFrames) -> dict[str, FrameFolder]:
    """Lazy RGB frame readers of every video."""
    return {name: FrameFolder(paths) for name, paths in frames.videos.items()}


def _truth_indices(frames: ProjectFrames, name: str, reference: Reference | None) -> list[int]:
    """Frames of a video with ground truth: every frame the reference covers, else the human-labelled ones."""
    if reference is not None and reference(name, frames.source_indices[name][0]) is not None:
        return list(range(len(frames.videos[name])))
    return sorted(frames.labels.get(name, {}))


def held_out_frames(frames: ProjectFrames, val_keys: list[tuple[str, int]], reference: Reference | None,
                    exclude: Sequence[str] = ()) -> dict[str, list[int]]:
    """{video: frame indices} scored as held-out frames: with a reference every unlabelled frame of the videos it
    covers, else the validation frames; videos in `exclude` (held out whole) are left out."""
    labeled = set(frames.labeled())
    chosen = {}
    for name in frames.videos:
        if name in exclude:
            continue
        if reference is not None:
            if reference(name, frames.source_indices[name][0]) is None:
                continue
            indices = [i for i in range(len(frames.videos[name])) if (name, i) not in labeled]
        else:
            indices = [i for v, i in val_keys if v == name]
        if indices:
            chosen[name] = indices
    return chosen


def evaluate_vss_project(trained, feats, frames: ProjectFrames, chosen: dict[str, list[int]],
                         reference: Reference | None,
                         held_out: set[tuple[str, int]]) -> tuple[dict[tuple[str, str, str], float], int]:
    """({(scope, key, name): value}, frames scored) on the `chosen` frames: mIoU, per-class IoU and J&F, temporal
    flicker and stability, against the majority-class baseline; with a temporal module also every overall score
    without it (`…_without_temporal`)."""
    from segloop.platform.vss import head as vss
    from segloop.platform.vss.temporal import predict_frames

    if not chosen:
        return {}, 0
    head_maps, fused_maps, truth = {}, {}, {}
    for name, indices in chosen.items():
        probs, fused = predict_frames(trained, feats[name], FrameFolder(frames.videos[name]))
        size = feats[name].size
        head_maps[name] = [vss.class_map(p, size) for p in probs]
        if fused is not None:
            fused_maps[name] = [vss.class_map(p, size) for p in fused]
        gt = {i: (reference(name, frames.source_indices[name][i]) if reference is not None else frames.labels[name][i])
              for i in indices}
        truth[name] = _Sparse(len(probs), gt, size)
    values = _vss_scores(fused_maps or head_maps, truth, chosen, trained.num_classes)
    if fused_maps:
        without = _vss_scores(head_maps, truth, chosen, trained.num_classes)
        values.update({(scope, key, name + WITHOUT_TEMPORAL): v for (scope, key, name), v in without.items()
                       if scope == "overall"})
    majority = majority_class(frames, held_out)
    constant = {name: [np.full(feats[name].size, majority, dtype=np.uint8)] * len(head_maps[name])
                for name in head_maps}
    baseline = evaluation_scores(constant, truth, chosen, trained.num_classes)["mIoU"]
    values[("overall", "", "mIoU_majority_baseline")] = baseline
    values[("overall", "", "below_baseline")] = float(values[("overall", "", "mIoU")] <= baseline)
    return values, sum(len(v) for v in chosen.values())


def evaluation_scores(predictions, truth, chosen, num_classes: int) -> dict:
    """`evaluate_vss` of class maps on the chosen frames."""
    from segloop.platform.evaluation import metrics as evaluation

    return evaluation.evaluate_vss(predictions, truth, num_classes, frames=chosen)


def _vss_scores(predictions, truth, chosen, num_classes: int) -> dict[tuple[str, str, str], float]:
    """Overall mIoU, temporal flicker and stability, per-class IoU and J&F as metric rows."""
    result = evaluation_scores(predictions, truth, chosen, num_classes)
    values = {("overall", "", "mIoU"): result["mIoU"]}
    for measure in ("temporal_flicker", "temporal_stability"):
        if result[measure] is not None:
            values[("overall", "", measure)] = result[measure]
    for cls, entry in result["classes"].items():
        for measure in ("IoU", "J&F"):
            if entry.get(measure) is not None:
                values[("class", cls, measure)] = entry[measure]
    return values


def majority_class(frames: ProjectFrames, held_out: set[tuple[str, int]]) -> int:
    """The most frequent class over the labelled pixels the model trained on (the VSS baseline)."""
    counts = np.zeros(256, dtype=np.int64)
    for name, index in frames.labeled():
        if (name, index) not in held_out:
            counts += np.bincount(frames.labels[name][index].ravel(), minlength=256)[:256]
    counts[255] = 0
    return int(counts.argmax())


class _Sparse(Sequence):
    """Label maps of some frames of a video (others read as all-void, never scored)."""

    def __init__(self, count: int, maps: dict[int, np.ndarray], size: tuple[int, int]) -> None:
        self.count, self.maps, self.size = count, maps, size

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> np.ndarray:
        if index in self.maps:
            return self.maps[index]
        return np.full(self.size, 255, dtype=np.uint8)


def prediction_dir(settings: Settings, checkpoint_id: int) -> Path:
    """Where a checkpoint's predictions live."""
    return settings.runs_dir / "predictions" / str(checkpoint_id)


def predict_project(project: str, checkpoint_id: int | None = None, *, settings: Settings | None = None,
                    job_id: int | None = None, progress: Progress | None = None) -> dict:
    """Predict every frame of the project with a VSS checkpoint (and its temporal module, if any) or a VOS one
    (propagated from each video's human masks), by default the project's newest of either: .npz per video +
    uncertainty frame scores."""
    from segloop.platform.vss import head as vss
    from segloop.platform.vss.temporal import predict_frames

    settings = settings or load_settings()
    report = progress or (lambda fraction, message: None)
    checkpoint_id = checkpoint_id if checkpoint_id is not None else _newest_predictor(project, settings)
    with session_scope(get_engine(settings)) as session:
        checkpoint = artifacts.get_checkpoint(session, checkpoint_id)
    if checkpoint.kind == "vos":
        return predict_vos_project(project, checkpoint, settings=settings, job_id=job_id, progress=progress)
    if checkpoint.kind != "vss":
        raise FinetuneError(f"checkpoint {checkpoint_id} is a {checkpoint.kind!r} checkpoint; "
                            "predict needs a vss or vos one")
    trained, backbone = vss.load_vss(checkpoint.path)
    frames = load_project(project, settings)
    if backbone is not None:
        feats = _features_with(backbone, frames, trained.spec)
    else:
        feats = features_of(frames, trained.spec, settings, lambda f, m: report(0.5 * f, m))
    out_dir = prediction_dir(settings, checkpoint_id)
    signals: dict[str, dict[int, float]] = {}
    written = []
    for position, name in enumerate(frames.videos):
        probs, fused = predict_frames(trained, feats[name], FrameFolder(frames.videos[name]))
        probs = probs if fused is None else fused
        written.append(str(vss.save_predictions(out_dir / f"{frames.video_ids[name]}.npz", name, probs,
                                                feats[name].size, frames.frame_ids[name])))
        for signal, values in vss.uncertainty_signals(probs).items():
            signals.setdefault(signal, {}).update(zip(frames.frame_ids[name], values.tolist()))
        report(0.5 + 0.5 * (position + 1) / len(frames.videos), f"predicted {name}")
    _store_signals(settings, signals, job_id, checkpoint_id)
    return {"checkpoint_id": checkpoint_id, "files": written, "frames": sum(len(v) for v in frames.videos.values()),
            "signals": sorted(signals), "temporal": trained.temporal is not None}


def _newest_predictor(project: str, settings: Settings) -> int:
    """The id of the project's newest VSS or VOS checkpoint (FinetuneError when it has neither)."""
    from segloop.platform.services.models import project_models

    engine = get_engine(settings)
    with session_scope(engine) as session:
        project_id = projects.get_project(session, project).id
    newest = project_models(project_id, engine).newest_predictor
    if newest is None:
        raise FinetuneError(f"project {project!r} has no VSS or VOS checkpoint to predict with yet: run "
                            "`finetune vss` or `finetune vos` on it first")
    return newest.id


def predict_vos_project(project: str, checkpoint, *, settings: Settings, job_id: int | None = None,
                        progress: Progress | None = None) -> dict:
    """Propagate each video's human masks with a registered memory VOS model: per video an .npz of object
    probabilities at stride 4 (channel = object id; the VSS prediction format), per frame `vos_uncertainty`.
    Videos without a human mask are skipped (listed in the result)."""
    from segloop.platform.services.models import VOS_MODEL, ProjectModels, make_propagator
    from segloop.platform.services.propagation import UNCERTAINTY_SIGNAL
    from segloop.platform.vos import propagation as vos
    from segloop.platform.vss import head as vss

    report = progress or (lambda fraction, message: None)
    frames = load_project(project, settings, object_labels=True)
    models = ProjectModels(checkpoint.project_id or 0, vos=checkpoint)
    if models.vos_model_dir is None:
        raise FinetuneError(f"checkpoint {checkpoint.id}: not a memory VOS model folder (train one with finetune vos)")
    propagator = make_propagator(models, VOS_MODEL, vos.PropagationConfig())
    out_dir = prediction_dir(settings, checkpoint.id)
    uncertainty: dict[int, float] = {}
    written, skipped = [], []
    for position, name in enumerate(frames.videos):
        keyframes = frames.labels.get(name) or {}
        if not keyframes:
            skipped.append(name)
            continue
        reader = FrameFolder(frames.videos[name])
        objects = max(int(m.max()) for m in keyframes.values()) + 1
        probs = []
        for item in vos.iter_propagate(reader, keyframes, propagator):
            probs.append(object_probabilities(item.mask, objects))
            certain = item.confidence.get("fg_mean_max_prob") or item.confidence.get("mean_max_prob", 1.0)
            uncertainty[frames.frame_ids[name][item.index]] = 0.0 if item.index in keyframes else 1.0 - certain
        written.append(str(vss.save_predictions(out_dir / f"{frames.video_ids[name]}.npz", name, np.stack(probs),
                                                reader.size, frames.frame_ids[name])))
        report((position + 1) / len(frames.videos), f"propagated {name}")
    signals = {UNCERTAINTY_SIGNAL: uncertainty} if uncertainty else {}
    _store_signals(settings, signals, job_id, checkpoint.id)
    return {"checkpoint_id": checkpoint.id, "files": written,
            "frames": sum(len(frames.videos[n]) for n in frames.videos if n not in skipped),
            "signals": sorted(signals), "skipped_videos": skipped}


def object_probabilities(mask: np.ndarray, objects: int, stride: int = 4) -> np.ndarray:
    """(objects, H/stride, W/stride) float32: each object id's share of every stride × stride cell of a label map."""
    import cv2

    height, width = mask.shape
    size = (max(1, width // stride), max(1, height // stride))
    return np.stack([cv2.resize((mask == k).astype(np.float32), size, interpolation=cv2.INTER_AREA)
                     for k in range(objects)])


def _store_signals(settings: Settings, signals: dict[str, dict[int, float]], job_id: int | None,
                   checkpoint_id: int) -> None:
    """Per-frame uncertainty signals as frame scores of the checkpoint."""
    with session_scope(get_engine(settings)) as session:
        for signal, values in signals.items():
            scores.add_frame_scores(session, signal, values, job_id=job_id, checkpoint_id=checkpoint_id)


def _features_with(backbone, frames: ProjectFrames, spec: FeatureSpec):
    """Features from a fine-tuned backbone (not cached: the weights live only in the checkpoint)."""
    from segloop.platform.features.backbone import extract_video

    return {name: extract_video(name, paths, spec, backbone) for name, paths in frames.videos.items()}


@claims_out
def finetune_vos_project(project: str, out_dir: str | Path, *, pretrained: str | None = None,
                         backbone: str = DEFAULT_BACKBONE, config=None, prop_short_side: int = 240,
                         settings: Settings | None = None, job_id: int | None = None,
                         progress: Progress | None = None) -> FinetuneResult | None:
    """Train the memory VOS model on the project's human masks (encoder: the pretrain run of `pretrained`),
    register it, and compare it with plain propagation by the same encoder from each video's first human
    frame on its other human frames (frames it was also trained on: a check, not a held-out score)."""
    from segloop.platform.vos import memory_train

    settings = settings or load_settings()
    require_fresh_out(out_dir, settings)
    report = progress or (lambda fraction, message: None)
    frames = load_project(project, settings, object_labels=True)
    videos = {name: FrameFolder(paths) for name, paths in frames.videos.items()}
    labels = {name: maps for name, maps in frames.labels.items() if maps}
    if not labels:
        raise FinetuneError(f"project {project!r} has no human mask to fine-tune the VOS model on")
    source = Path(pretrained).parent if pretrained else None
    encoder = memory_train.frame_encoder(source)
    memory_train.check_scoring_size({n: videos[n] for n in labels}, encoder.stride, prop_short_side)
    trained = memory_train.train_memory_model({n: videos[n] for n in labels}, labels, encoder, config,
                                              progress=lambda f, m: report(0.7 * f, m))
    if not is_main_process():
        return None
    folder = save_memory_model(trained.model, Path(out_dir), extra={"project": project, "pretrained": pretrained})
    keyframes = {name: [min(maps)] for name, maps in labels.items()}
    values = memory_train.held_out_comparison({n: videos[n] for n in labels}, labels, keyframes, trained.model,
                                              prop_short_side, lambda f, m: report(0.7 + 0.3 * f, m))
    with session_scope(get_engine(settings)) as session:
        info = projects.get_project(session, project)
        checkpoint = artifacts.add_checkpoint(
            session, "vos", backbone, str(folder.resolve()), project_id=info.id, job_id=job_id,
            step=len(trained.losses), params={"model": "memory", "pretrained": pretrained,
                                              "config": (config or memory_train.MemoryTrainConfig()).as_dict(),
                                              "labeled_frame_ids": [frames.frame_ids[v][i]
                                                                    for v, i in frames.labeled()],
                                              "propagation": {"short_side": prop_short_side},
                                              "losses": [round(float(x), 5) for x in trained.losses]})
        metrics.add_metrics(session, [("overall", "", k, v) for k, v in values.items()], job_id=job_id,
                            project_id=info.id, checkpoint_id=checkpoint.id)
    return FinetuneResult(checkpoint.id, str(folder), trained.labelled_frames, values, len(frames.labeled()))


@claims_out
def finetune_vos_root(root: str | Path, keyframes: str, out_dir: str | Path, *, encoder: str | Path | None = None,
                      config=None, prop_short_side: int = 240, progress: Progress | None = None) -> dict:
    """Train the memory VOS model on the masks of `keyframes` of each sequence of a DAVIS root, save it to
    `out_dir`, and score it against plain propagation (same encoder) on every other annotated frame:
    {"scores": {"J&F_plain", "J&F_model"}, "steps": steps trained, "seconds": training time}. The model folder's
    settings record the root, keyframes, encoder, steps, seconds, losses and (once scored) the scores."""
    from segloop.platform.core.davis import open_layout
    from segloop.platform.core.masks import read_mask
    from segloop.platform.vos import memory_train
    from segloop.platform.vos.propagation import keyframe_mask_files

    settings = load_settings()
    require_fresh_out(out_dir, settings, only_with_a_database=True)
    report = progress or (lambda fraction, message: None)
    layout = open_layout(root)
    videos, truth, chosen = {}, {}, {}
    for name in layout.sequences():
        paths = layout.frames(name)
        videos[name] = FrameFolder(paths)
        masks = {i: layout.masks_dir / name / f"{p.stem}.png" for i, p in enumerate(paths)}
        truth[name] = {i: read_mask(m) for i, m in masks.items() if m.is_file()}
        chosen[name] = sorted(keyframe_mask_files(name, paths, layout.masks_dir / name, keyframes))
    labels = {name: {k: truth[name][k] for k in chosen[name]} for name in videos}
    frame_encoder = memory_train.frame_encoder(encoder)
    memory_train.check_scoring_size(videos, frame_encoder.stride, prop_short_side)
    trained = memory_train.train_memory_model(videos, labels, frame_encoder, config,
                                              progress=lambda f, m: report(0.6 * f, m))
    record = {"root": str(root), "keyframes": keyframes, "encoder": str(encoder) if encoder else None,
              "steps": len(trained.losses), "seconds": round(trained.seconds, 1),
              "losses": [round(float(x), 5) for x in trained.losses]}
    save_memory_model(trained.model, Path(out_dir), extra=record)  # kept even if scoring fails
    scores = memory_train.held_out_comparison(videos, truth, chosen, trained.model, prop_short_side,
                                              lambda f, m: report(0.6 + 0.4 * f, m))
    write_memory_settings(trained.model, Path(out_dir), extra={**record, "scores": scores})
    return {"scores": scores, "steps": len(trained.losses), "seconds": trained.seconds}


