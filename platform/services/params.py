"""One params dataclass per operation: defaults that run on a CPU, bounds, choices and help text.

The job JSON, the CLI options and the Jobs page's forms are all derived from these classes (see
`segloop.platform.core.specs`), so a field exists, is named and is bounded the same way everywhere.
A field's `ref` names what it points at; `services.jobs` checks those references when a job is submitted.
"""
from __future__ import annotations

from dataclasses import dataclass

from segloop.platform.core.backbones import BACKBONE_NAMES, DEFAULT_BACKBONE
from segloop.platform.core.image import MAX_SIDE
from segloop.platform.core.specs import param

DEFAULT_PROJECT = "default"
DEFAULT_PRESET = "cpu_10min_vit_tiny.yaml"
KEYFRAMES_PATTERN = r"first|uniform:[1-9][0-9]*|[0-9]+( *, *[0-9]+)*"
KEYFRAMES_HINT = "first, uniform:K or comma-separated frame indices"


def _project(help: str = "Project the operation works on.") -> str:
    """The `project` field: an existing project."""
    return param(DEFAULT_PROJECT, help=help, ref="project")


def _backbone() -> str:
    """The `backbone` field: a known preset, the one default."""
    return param(DEFAULT_BACKBONE, choices=BACKBONE_NAMES,
                 help="timm ViT for weights that do not record theirs, or for random init (only when no weights "
                      "are given and the project has no pretrained encoder).")


def _pretrained_id() -> int | None:
    """The `checkpoint_id` field: a pretraining checkpoint of the DB."""
    return param(None, ref="checkpoint:pretrain",
                 help="Pretrained backbone: a pretrain checkpoint id of the DB (default: the project's newest "
                      "pretrained encoder; random init only when the project has none, and the result says so).")


def _weights() -> str | None:
    """The `weights` field: a local timm-layout weights file or pretrain run folder."""
    return param(None, ref="weights", help="Pretrained backbone: a local timm-layout weights file or `segloop "
                                           "pretrain --out` folder (instead of an id).")


@dataclass
class IngestParams:
    """Ingest video files, folders of them, or DAVIS-layout frame folders into a project."""

    paths: list[str] = param(default_factory=list, min_items=1, ref="paths", help="Video files or folders to ingest.")
    project: str = param(DEFAULT_PROJECT, ref="new_project", help="Project to add the footage to (created if new).")
    fps: float | None = param(None, min=0, min_exclusive=True, help="Sample frames at this rate (default: all).")
    max_side: int | None = param(None, min=16, help="Downscale frames so the longer side is at most PX.")
    masks: str | None = param(None, ref="folder", help="Mask folder: <DIR>/<video name>/*.png per input (or a DAVIS "
                                                       "root / its Annotations folder).")


@dataclass
class PretrainParams:
    """Self-supervised pretraining on a project's frames (`config` holds nested overrides, as YAML would)."""

    project: str = _project()
    preset: str | None = param(DEFAULT_PRESET, ref="preset", help="A preset file of segloop/pretrain/configs.")
    backbone: str | None = param(None, choices=BACKBONE_NAMES, help="timm ViT (default: the preset's).")
    max_minutes: float | None = param(None, min=0, min_exclusive=True, help="Wall-clock limit (default: the preset's).")
    steps: int | None = param(None, min=1, help="Optimisation steps (default: the preset's).")
    config: dict = param(default_factory=dict, ref="pretrain_config",
                         help="Nested config overrides, e.g. {\"run\": {\"batch_size\": 8}}.")


@dataclass
class EmbedParams:
    """Embed every frame of a project with its pretrained encoder (or the checkpoint given)."""

    project: str = _project()
    checkpoint_id: int | None = _pretrained_id()
    backbone: str = _backbone()
    img_size: int = param(224, min=16, max=MAX_SIDE, help="Short side of the resized frames (px).")
    batch_size: int = param(32, min=1, help="Frames per forward pass.")
    vector: str = param("cls", choices=("cls", "patch_mean"), help="Which vector the embedding set indexes.")
    random_init: bool = param(False, ref="random_init",
                              help="Embed with a random-init `backbone` even when the project has a pretrained "
                                   "encoder (a baseline); not with checkpoint_id.")


@dataclass
class SelectParams:
    """Pick frames to label with a strategy and store the selection run."""

    project: str = _project()
    strategy: str = param("kcenter", ref="strategy", help="A registered strategy (`segloop select strategies`).")
    budget: int = param(10, min=1, help="Frames to pick.")
    params: dict = param(default_factory=dict, ref="strategy_params",
                         help="Strategy parameters, e.g. {\"signal\": \"vss_entropy_mean\"}.")
    embedding_set_id: int | None = param(None, ref="embedding_set", help="Default: the project's newest.")
    min_gap_frames: int = param(0, min=0, help="Minimum distance in frames between picks of one video.")
    min_gap_seconds: float = param(0.0, min=0, help="Minimum time in seconds between picks of one video.")
    max_per_video: int | None = param(None, min=1, help="At most this many picks per video.")
    videos: list[int] = param(default_factory=list, min=1, ref="video_ids", help="Only frames of these video ids.")
    time_range: list[float] = param(default_factory=list, ref="time_range",
                                    help="Only frames with START <= t <= END seconds: START and END (empty: all).")
    one_per_duplicate_group: bool = param(True, help="At most one pick per near-duplicate group.")
    include_labeled: bool = param(False, help="Allow frames that already have masks.")
    include_selected: bool = param(False, help="Allow frames already picked by an earlier run.")


@dataclass
class PropagateParams:
    """Propagate a video's human masks to its other frames (drafts, uncertainty, J&F on held-out masks)."""

    video_ids: list[int] = param(default_factory=list, min=1, min_items=1, ref="video_ids",
                                 help="DB video ids to propagate.")
    method: str = param("auto", choices=("auto", "backbone", "dense", "pixels", "copy"),
                        help="auto: the project's best propagator (its pretrained encoder, chosen per video by "
                             "leave-one-keyframe-out J&F on the human masks); or learned features of --checkpoint, "
                             "raw Lab pixel patches, or copy the nearest keyframe's mask.")
    backbone: str = _backbone()
    checkpoint: str | None = param(None, ref="path",
                                   help="A pretrain run folder or local timm-layout weights (method backbone/"
                                        "dense; with auto, its features for every video).")
    keyframes: str | None = param(None, pattern=KEYFRAMES_PATTERN, pattern_hint=KEYFRAMES_HINT,
                                  help="Keyframes (default: every human-labeled frame).")
    short_side: int = param(480, min=16, max=MAX_SIDE, help="Frames are resized to this short side (px).")


@dataclass
class FinetuneBase:
    """The fields fine-tuning operations share: the project and the backbone whose features are trained on."""

    project: str = _project()
    checkpoint_id: int | None = _pretrained_id()
    weights: str | None = _weights()
    backbone: str = _backbone()
    short_side: int = param(192, min=16, max=MAX_SIDE,
                            help="Frames are embedded at this short side (features cached per frame).")


@dataclass
class FinetuneVSSParams(FinetuneBase):
    """Train a VSS head on a project's labeled frames (background + the project's label classes)."""

    head: str = param("multiscale", choices=("linear", "multiscale"), help="Linear or multi-scale head.")
    epochs: int = param(30, min=1, help="Passes over the labeled frames.")
    min_steps: int = param(200, min=0, help="At least this many optimisation steps.")
    lr: float = param(2e-3, min=0, min_exclusive=True, help="Learning rate of the head.")
    finetune_backbone: bool = param(False, help="Train the backbone too (layer-wise LR decay); slow on a CPU.")
    layer_decay: float = param(0.75, min=0, max=1, min_exclusive=True, help="Layer-wise LR decay of the backbone.")
    val_fraction: float = param(0.2, min=0, max=0.9,
                                help="Labeled frames held out for evaluation (none below 5 labeled frames).")
    oracle: str | None = param(None, ref="path",
                               help="Ground truth (DAVIS root or <dir>/<video>/%05d.png): score every unlabeled frame.")
    val_videos: int = param(0, min=0,
                            help="Whole videos held out from training (chosen by seed) and scored on every frame with "
                                 "ground truth (the oracle's, else their human masks).")
    temporal: bool = param(False, help="Temporal module: the previous frame's probabilities carried through the "
                                       "pretrained encoder's dense correspondence, fused by a gate trained on the "
                                       "labelled frames; stored with the checkpoint and used by predict.")
    seed: int = param(0, min=0, help="Random seed.")


@dataclass
class FinetuneVOSParams(FinetuneBase):
    """Train the memory VOS model on a project's human masks (keys from its pretrained encoder); J&F of plain
    propagation vs the model from each video's first human frame."""

    steps: int = param(600, min=1, help="Optimisation steps (at most about 3 minutes on a 2-core CPU; the learning "
                                        "rate anneals over whichever of steps and time runs out first).")
    prop_short_side: int = param(240, min=16, max=MAX_SIDE,
                                 help="Working short side (px) of propagation with the model.")
    seed: int = param(0, min=0, help="Random seed.")


@dataclass
class PredictParams:
    """Predict every frame of a project with a VSS checkpoint (its temporal module too, when it has one) or a VOS
    checkpoint (propagated from each video's human masks); per-frame uncertainty scores."""

    checkpoint_id: int | None = param(None, ref="checkpoint:vss|vos",
                                      help="A VSS or VOS checkpoint id (default: the project's newest of either).")
    project: str = _project()


@dataclass
class LoopRoundParams:
    """One active-learning round: select, label (oracle) or wait, fine-tune, predict, evaluate."""

    project: str = _project()
    strategy: str = param("kcenter", ref="strategy", help="A registered selection strategy.")
    budget: int = param(8, min=1, help="Frames to pick this round.")
    strategy_params: dict = param(default_factory=dict, ref="strategy_params",
                                  help="Strategy parameters, e.g. {\"signal\": \"vss_margin\"}.")
    checkpoint_id: int | None = _pretrained_id()
    weights: str | None = _weights()
    backbone: str = _backbone()
    oracle: str | None = param(None, ref="path",
                               help="Ground truth to simulate the annotator; without it the round stops at selection.")
    max_per_video: int | None = param(None, min=1, help="At most this many picks per video.")


@dataclass
class Map2dParams:
    """A cached 2-D map (t-SNE or PCA) of an embedding set for the Explore page."""

    embedding_set_id: int = param(ref="embedding_set", help="The embedding set to map.")
    method: str = param("tsne", choices=("tsne", "pca"), help="t-SNE or PCA.")
    max_points: int = param(5_000, min=10, help="Frames sampled from the set.")
    seed: int = param(0, min=0, help="Random seed of the sample and of t-SNE.")
    perplexity: float = param(30.0, min=1, help="t-SNE perplexity.")


@dataclass
class TagFramesParams:
    """Attach a user-named tag to frames of a project (created when new), or detach it."""

    tag: str = param(help="Tag name, e.g. night, blurry, occluded (at most 60 characters).")
    project: str = _project()
    frame_ids: list[int] = param(default_factory=list, min_items=1, help="Ids of the frames.")
