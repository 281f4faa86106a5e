"""Typed pretraining configuration: dataclasses with CPU-friendly defaults, YAML overrides, saved per run.

Layout follows facebookresearch/dinov2's `configs/ssl_default_config.yaml` (sections for the data
crops, the model, each loss term, the optimiser and the run), but as typed params dataclasses
(`segloop.platform.core.specs`) so that a YAML override with an unknown key, a wrong type or a value
out of bounds fails with a message naming the key; `validate` adds the checks that involve two fields.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from segloop.platform.core.backbones import DEFAULT_BACKBONE
from segloop.platform.core.errors import ValidationError
from segloop.platform.core.specs import coerce, param
from segloop.platform.core.storage import atomic_path

MAX_CROP = 2048  # px: a crop side above this is a typo (frames are at most 8K, crops a share of a frame)


class ConfigError(ValidationError):
    """A configuration file or value that cannot be used; the message names the key and the reason."""


@dataclass
class DataConfig:
    """Multi-crop views and clips cut from the user's frames (DINO multi-crop + video clips)."""

    global_size: int = param(64, min=1, max=MAX_CROP)
    local_size: int = param(32, min=1, max=MAX_CROP)
    num_local_crops: int = param(2, min=0)
    global_scale: tuple[float, float] = (0.35, 1.0)
    local_scale: tuple[float, float] = (0.1, 0.35)
    min_frame_gap: int = 1
    max_frame_gap: int = 8
    clip_length: int = 4
    clip_stride: int = param(2, min=1)
    clip_size: int = param(64, min=1, max=MAX_CROP)
    clip_scale: tuple[float, float] = (0.5, 1.0)
    clip_jitter: float = param(0.0, min=0, max=1, max_exclusive=True)
    color_jitter: float = param(0.8, min=0, max=1)
    solarization: float = param(0.2, min=0, max=1)
    num_workers: int = param(1, min=0)
    cache_frames: int = param(256, min=0)  # 0: no cache


@dataclass
class ModelConfig:
    """Student/teacher backbone (any timm ViT) and the projection heads."""

    backbone: str = DEFAULT_BACKBONE
    init_weights: str | None = None
    head_out_dim: int = param(1024, min=1)
    head_hidden_dim: int = param(512, min=1)
    head_bottleneck_dim: int = param(128, min=1)
    head_layers: int = param(3, min=1)
    drop_path_rate: float = param(0.0, min=0, max=1, max_exclusive=True)  # 1 would drop every block
    compile: bool = False


@dataclass
class LossConfig:
    """Weights and temperatures of each loss term; a weight of 0 switches the term off."""

    dino_weight: float = param(1.0, min=0)
    ibot_weight: float = param(1.0, min=0)
    koleo_weight: float = param(0.1, min=0)
    random_walk_weight: float = param(0.0, min=0)
    centering: str = param("centering", choices=("centering", "sinkhorn_knopp"))
    student_temp: float = param(0.1, min=0, min_exclusive=True)
    teacher_temp: float = param(0.07, min=0, min_exclusive=True)
    warmup_teacher_temp: float = param(0.04, min=0, min_exclusive=True)
    warmup_teacher_temp_fraction: float = param(0.3, min=0, max=1)
    center_momentum: float = param(0.9, min=0, max=1)
    mask_ratio: tuple[float, float] = (0.1, 0.5)
    mask_probability: float = param(0.5, min=0, max=1)
    random_walk_temp: float = param(0.07, min=0, min_exclusive=True)
    random_walk_edge_dropout: float = param(0.1, min=0, max=1, max_exclusive=True)


@dataclass
class OptimConfig:
    """AdamW with cosine learning-rate / weight-decay / teacher-momentum schedules."""

    lr: float = param(5e-4, min=0, min_exclusive=True)
    min_lr: float = param(1e-6, min=0)
    warmup_fraction: float = param(0.1, min=0, max=1)
    weight_decay: float = param(0.04, min=0)
    weight_decay_end: float = param(0.2, min=0)
    momentum_teacher: float = param(0.992, min=0, max=1)
    momentum_teacher_end: float = param(1.0, min=0, max=1)
    clip_grad: float = param(3.0, min=0)  # 0: no clipping
    layer_decay: float = param(0.75, min=0, max=1, min_exclusive=True)
    freeze_last_layer_steps: int = param(0, min=0)
    fused: bool = True


@dataclass
class RunConfig:
    """Length, batch, seed, checkpointing and precision of a run.

    `steps` is the schedules' horizon and the run length; with `max_minutes` the horizon is the
    wall-clock budget instead (learning rate, weight decay, teacher momentum and temperature follow
    elapsed / budget, and the run trains until the budget is spent), and `steps` is not used.
    """

    steps: int = param(200, min=1)
    max_minutes: float | None = param(None, min=0, min_exclusive=True)
    batch_size: int = param(16, min=1)
    seed: int = param(0, min=0)
    checkpoint_every: int = param(50, min=1)
    log_every: int = param(1, min=1)
    device: str = param("auto", choices=("auto", "cpu", "cuda"))
    bf16: bool = True


@dataclass
class DenseConfig:
    """Dense correspondence encoder trained beside the ViT by colour reconstruction (MAST-style).

    Each sample adds `pairs` frame pairs of one video, `min_gap`..`max_gap` frames apart, cut with one
    crop box (area share `crop_scale` of a frame decoded at short side `load_side`) resized to
    `crop_size`; the target frame's Lab cells are reconstructed from the reference frame's through a
    softmax(cos / `temperature`) affinity over a `radius`-cell window. `weight` 0 switches it off.
    The encoder's input has one random Lab channel zeroed with probability `channel_dropout` (1.0, every
    frame, by default: with 0.5, half the pairs can be matched by copying colour; on the DAVIS sample,
    10-minute runs gave 0.692 J&F with 1.0 vs 0.672-0.677 with 0.5). The encoder thus never sees a
    full-colour frame; the normalised mean of its three one-channel-dropped inputs' features propagates
    better than its full-colour features (`inference_views`, `EncoderConfig.dropout_views`: +0.004 to +0.016
    J&F on five 10-minute sample runs) but takes three passes (about 20 % fewer frames/s at 480p).
    `distil_share` (0.2) spends that last share of the run teaching a copy of the encoder to give the
    three views' result from the full-colour frame in one pass (`pretrain.dense.distil`, at `distil_lr`); the
    copy is the saved encoder (with `inference_views` the encoder is saved as trained, three passes, and
    nothing is distilled). `distil_target` "affinity" (default) matches the views' windowed affinity between
    two frames of a pair (KL, `radius`, `temperature`), "features" their mean features (cosine). Copies of
    three frozen encoders (2-4 minutes each): affinity 0.692 / 0.697 / 0.700 J&F vs features 0.685 / 0.698 /
    0.700 (full colour 0.681 / 0.692 / 0.686, three views 0.696 / 0.696 / 0.702). 10-minute sample runs,
    seeds 0 / 1 / 2: affinity 0.702 / 0.696 / 0.689, features 0.698 / 0.698 / 0.683, none 0.692 / 0.686 / 0.681.
    Pulling the full-colour features towards the views inside the reconstruction loss instead (shared
    weights, weight 0.1 / 1.0) made the views alike and lost 0.013 / 0.055. Tried and not kept (10-minute
    sample runs): a teacher averaged over the main phase's last 10-50 % of steps (uniform or EMA) was
    within 0.001 of the last weights (the cosine schedule has already settled them); one extra dense-only
    update after each main step (a third fewer ViT steps) gave -0.007 on seed 0 and +0.003 to +0.008 on
    seed 2 (against two default runs): seed noise.
    Architecture: `stride`, `width`, `blocks`, `dim`; `skip_weight` fuses the frame's Lab colour into
    the inference features (0: learned features only). Two basic blocks per stage (`blocks` 2, as in the
    ResNet-18 trunks of CRW / MAST) cost little here, the step being ViT-bound: 10-minute sample runs, seeds
    0-3, 0.708 / 0.706 / 0.703 / 0.716 J&F against 0.704 / 0.696 / 0.691 / 0.702 with one block (seed 2 again
    on the same machine, which then ran 863 steps against two blocks' 724: 0.701), while the untrained
    encoders stay put (0.591 / 0.568 / 0.594 / 0.573 vs 0.596 / 0.582 / 0.581 / 0.570). Twice the width (32, one
    block) gave 0.699 for seed 0 (untrained 0.607 / 0.574 / 0.584 / 0.588); three blocks 0.718 for seed 0, but
    its untrained copies rise too and spread (0.620 / 0.563 / 0.602 / 0.567).
    Ablation knobs, off by default (none beat the default beyond seed noise on the sample: 4-minute
    runs, and two 10-minute seeds with `references` 2): `references` > 1 draws that many reference
    frames per anchor and rebuilds each frame from all the others through one softmax (MAST's
    multi-frame memory); `box_jitter` shifts each reference's crop box by up to that share of its size;
    `photometric` jitters each frame's lightness and chroma in the encoder's input by up to that share;
    `cycle_weight` adds the contrastive random walk's palindrome loss over the frames' feature cells;
    `shift_weight` adds a synthetic-correspondence cross-entropy: two windows of each frame, up to
    `shift_cells` cells apart, each with its own colour dropout and `shift_photometric` jitter, must match
    every cell to its true position (the spatial stage of Spa-then-Temp, Li et al., 2023); 4-minute
    screens: 0.681 / 0.636 J&F at weight 0.01 / 0.05, so, like the random walk, it hurts here.
    """

    weight: float = param(1.0, min=0, help="0 switches the dense encoder off")
    stride: int = param(8, choices=(4, 8))
    width: int = 16
    blocks: int = 2
    dim: int = 64
    skip_weight: float = param(0.0, min=0, max=1)
    crop_size: int = 128
    crop_scale: tuple[float, float] = (0.1, 0.4)
    load_side: int = 480
    pairs: int = param(1, min=1)
    references: int = param(1, min=1)
    min_gap: int = 1
    max_gap: int = 8
    radius: int = param(6, min=1)
    temperature: float = param(0.05, min=0, min_exclusive=True)
    channel_dropout: float = param(1.0, min=0, max=1)
    inference_views: bool = param(False, help="average the features of the three one-channel-dropped inputs")
    photometric: float = param(0.0, min=0, max=1)
    box_jitter: float = param(0.0, min=0, max=0.5)
    cycle_weight: float = param(0.0, min=0)
    shift_weight: float = param(0.0, min=0)
    shift_cells: int = param(4, min=1)
    shift_photometric: float = param(0.2, min=0, max=1)
    distil_share: float = param(0.2, min=0, max=0.5,
                                help="last share of the run spent teaching a one-pass full-colour copy what the "
                                     "three dropped-channel views give (see distil_target)")
    distil_lr: float = param(3e-4, min=0, min_exclusive=True)
    distil_target: str = param("affinity", choices=("affinity", "features"),
                               help="what the one-pass copy learns from the views: their windowed affinity "
                                    "between two frames (KL) or their features (cosine)")
    lr: float = param(1e-3, min=0, min_exclusive=True)


DENSE_LAYOUT = ("stride", "width", "blocks", "dim")  # the DenseConfig fields that shape the encoder's weights


def dense_encoder_on(weight: float) -> bool:
    """Whether a run with this `dense.weight` builds and trains the dense encoder."""
    return weight > 0


@dataclass
class PretrainConfig:
    """The whole pretraining configuration."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    dense: DenseConfig = field(default_factory=DenseConfig)


def apply_overrides(config: PretrainConfig, overrides: Any) -> PretrainConfig:
    """A copy of `config` with the nested overrides' values checked and applied, or ConfigError naming the key."""
    try:
        return coerce(PretrainConfig, overrides, where="", base=config)
    except ValidationError as exc:
        raise ConfigError(str(exc)) from None


def validate(config: PretrainConfig) -> PretrainConfig:
    """The config itself, after the checks a field's own `param` bounds and choices cannot say (those are
    checked when values are applied): rules across fields or within a pair, and irregular ranges."""
    checks = [
        (config.data.clip_length == 0 or config.data.clip_length >= 2, "data.clip_length", "must be 0 or >= 2"),
        (0 <= config.data.min_frame_gap <= config.data.max_frame_gap, "data.min_frame_gap",
         "must be >= 0 and <= data.max_frame_gap (0 and 0: both global crops from one frame)"),
        *((0.0 < low <= high <= 1.0, key, "must be [low, high] with 0 < low <= high <= 1")
          for key, (low, high) in (("data.global_scale", config.data.global_scale),
                                   ("data.local_scale", config.data.local_scale),
                                   ("data.clip_scale", config.data.clip_scale))),
        (0.0 <= config.loss.mask_ratio[0] <= config.loss.mask_ratio[1] < 1.0, "loss.mask_ratio",
         "must be [low, high] with 0 <= low <= high < 1"),
        (config.run.batch_size >= 2 or config.loss.koleo_weight == 0, "run.batch_size",
         "must be >= 2 when loss.koleo_weight > 0 (KoLeo needs neighbours)"),
        (config.dense.crop_size % (8 * config.dense.stride) == 0, "dense.crop_size",
         "must be a multiple of 8 x dense.stride"),
        (0.0 < config.dense.crop_scale[0] <= config.dense.crop_scale[1] <= 1.0, "dense.crop_scale",
         "must be [low, high] with 0 < low <= high <= 1"),
        (1 <= config.dense.min_gap <= config.dense.max_gap, "dense.min_gap", "must be >= 1 and <= dense.max_gap"),
        (config.dense.shift_weight == 0
         or config.dense.shift_cells <= min(config.dense.radius, config.dense.crop_size // config.dense.stride - 2),
         "dense.shift_cells", "must be <= dense.radius and leave at least 2 cells of the crop"),
    ]
    for ok, key, reason in checks:
        if not ok:
            raise ConfigError(f"{key}: {reason}")
    return config


def config_from_dict(overrides: dict | None) -> PretrainConfig:
    """Defaults with the nested overrides applied and validated."""
    config = PretrainConfig()
    if overrides:
        config = apply_overrides(config, overrides)
    return validate(config)


def load_config(path: str | Path | None, overrides: dict | None = None) -> PretrainConfig:
    """Defaults, then the YAML file's values, then explicit overrides (e.g. from CLI flags)."""
    config = PretrainConfig()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file does not exist")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        try:
            config = apply_overrides(config, loaded)
            if not overrides:
                validate(config)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    if overrides:
        config = apply_overrides(config, overrides)
    return validate(config)


def config_to_dict(config: PretrainConfig) -> dict:
    """Plain nested dict (tuples as lists) suitable for YAML."""
    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(dataclasses.asdict(config))


def save_config(config: PretrainConfig, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        yaml.safe_dump(config_to_dict(config), handle, sort_keys=False)
