"""Typed pretraining configuration: dataclasses with CPU-friendly defaults, YAML overrides, saved per run.

Layout follows facebookresearch/dinov2's `configs/ssl_default_config.yaml` (sections for the data
crops, the model, each loss term, the optimiser and the run), but as dataclasses so that a YAML
override with an unknown key or a wrong type fails with a message naming the key.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from segloop.platform.core.storage import atomic_path


class ConfigError(ValueError):
    """A configuration file or value that cannot be used; the message names the key and the reason."""


@dataclass
class DataConfig:
    """Multi-crop views and clips cut from the user's frames (DINO multi-crop + video clips)."""

    global_size: int = 64
    local_size: int = 32
    num_local_crops: int = 2
    global_scale: tuple[float, float] = (0.35, 1.0)
    local_scale: tuple[float, float] = (0.1, 0.35)
    min_frame_gap: int = 1
    max_frame_gap: int = 8
    clip_length: int = 4
    clip_stride: int = 2
    clip_size: int = 64
    clip_scale: tuple[float, float] = (0.5, 1.0)
    clip_jitter: float = 0.0
    color_jitter: float = 0.8
    solarization: float = 0.2
    num_workers: int = 1
    cache_frames: int = 256


@dataclass
class ModelConfig:
    """Student/teacher backbone (any timm ViT) and the projection heads."""

    backbone: str = "vit_tiny_patch16_224"
    init_weights: str | None = None
    head_out_dim: int = 1024
    head_hidden_dim: int = 512
    head_bottleneck_dim: int = 128
    head_layers: int = 3
    drop_path_rate: float = 0.0
    compile: bool = False


@dataclass
class LossConfig:
    """Weights and temperatures of each loss term; a weight of 0 switches the term off."""

    dino_weight: float = 1.0
    ibot_weight: float = 1.0
    koleo_weight: float = 0.1
    random_walk_weight: float = 0.0
    centering: str = "centering"
    student_temp: float = 0.1
    teacher_temp: float = 0.07
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_fraction: float = 0.3
    center_momentum: float = 0.9
    mask_ratio: tuple[float, float] = (0.1, 0.5)
    mask_probability: float = 0.5
    random_walk_temp: float = 0.07
    random_walk_edge_dropout: float = 0.1


@dataclass
class OptimConfig:
    """AdamW with cosine learning-rate / weight-decay / teacher-momentum schedules."""

    lr: float = 5e-4
    min_lr: float = 1e-6
    warmup_fraction: float = 0.1
    weight_decay: float = 0.04
    weight_decay_end: float = 0.2
    momentum_teacher: float = 0.992
    momentum_teacher_end: float = 1.0
    clip_grad: float = 3.0
    layer_decay: float = 0.75
    freeze_last_layer_steps: int = 0
    fused: bool = True


@dataclass
class RunConfig:
    """Length, batch, seed, checkpointing and precision of a run.

    `steps` is the schedules' horizon and the run length; with `max_minutes` the horizon is the
    wall-clock budget instead (learning rate, weight decay, teacher momentum and temperature follow
    elapsed / budget, and the run trains until the budget is spent), and `steps` is not used.
    """

    steps: int = 200
    max_minutes: float | None = None
    batch_size: int = 16
    seed: int = 0
    checkpoint_every: int = 50
    log_every: int = 1
    device: str = "auto"
    bf16: bool = True


@dataclass
class DenseConfig:
    """Dense correspondence encoder trained beside the ViT by colour reconstruction (MAST-style).

    Each sample adds `pairs` frame pairs of one video, `min_gap`..`max_gap` frames apart, cut with one
    crop box (area share `crop_scale` of a frame decoded at short side `load_side`) resized to
    `crop_size`; the target frame's Lab cells are reconstructed from the reference frame's through a
    softmax(cos / `temperature`) affinity over a `radius`-cell window. `weight` 0 switches it off.
    Architecture: `stride`, `width`, `blocks`, `dim`; `skip_weight` fuses the frame's Lab colour into
    the inference features (0: learned features only).
    """

    weight: float = 1.0
    stride: int = 8
    width: int = 16
    blocks: int = 1
    dim: int = 64
    skip_weight: float = 0.0
    crop_size: int = 128
    crop_scale: tuple[float, float] = (0.1, 0.4)
    load_side: int = 480
    pairs: int = 1
    min_gap: int = 1
    max_gap: int = 8
    radius: int = 6
    temperature: float = 0.05
    channel_dropout: float = 0.5
    lr: float = 1e-3


@dataclass
class PretrainConfig:
    """The whole pretraining configuration."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    dense: DenseConfig = field(default_factory=DenseConfig)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """The value converted to the annotated type, or a ConfigError naming the key."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is tuple:
        kinds = typing.get_args(hint)
        if not isinstance(value, (list, tuple)) or len(value) != len(kinds):
            raise ConfigError(f"{key}: expected a list of {len(kinds)} numbers, got {value!r}")
        return tuple(_coerce(item, kind, f"{key}[{i}]") for i, (item, kind) in enumerate(zip(value, kinds)))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {hint!r}")


def _apply(target: Any, overrides: dict, prefix: str) -> None:
    """Set the overrides onto a dataclass instance in place, recursing into nested sections."""
    if not isinstance(overrides, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {overrides!r}")
    hints = typing.get_type_hints(type(target))
    names = {f.name for f in dataclasses.fields(target)}
    for name, value in overrides.items():
        key = f"{prefix}{name}"
        if name not in names:
            raise ConfigError(f"{key}: unknown key (known: {', '.join(sorted(names))})")
        current = getattr(target, name)
        if dataclasses.is_dataclass(current):
            _apply(current, value, f"{key}.")
        else:
            setattr(target, name, _coerce(value, hints[name], key))


def validate(config: PretrainConfig) -> PretrainConfig:
    """The config itself, after checking values that types alone cannot catch."""
    checks = [
        (config.data.global_size > 0, "data.global_size", "must be positive"),
        (config.data.local_size > 0, "data.local_size", "must be positive"),
        (config.data.num_local_crops >= 0, "data.num_local_crops", "must be >= 0"),
        (config.data.clip_length == 0 or config.data.clip_length >= 2, "data.clip_length", "must be 0 or >= 2"),
        (0 <= config.data.min_frame_gap <= config.data.max_frame_gap, "data.min_frame_gap",
         "must be >= 0 and <= data.max_frame_gap (0 and 0: both global crops from one frame)"),
        (config.data.num_workers >= 0, "data.num_workers", "must be >= 0"),
        (0.0 <= config.data.clip_jitter < 1.0, "data.clip_jitter", "must be in [0, 1)"),
        (config.loss.centering in ("centering", "sinkhorn_knopp"), "loss.centering",
         "must be 'centering' or 'sinkhorn_knopp'"),
        (0.0 <= config.loss.mask_ratio[0] <= config.loss.mask_ratio[1] < 1.0, "loss.mask_ratio",
         "must be [low, high] with 0 <= low <= high < 1"),
        (config.run.steps > 0, "run.steps", "must be positive"),
        (config.run.batch_size >= 2 or config.loss.koleo_weight == 0, "run.batch_size",
         "must be >= 2 when loss.koleo_weight > 0 (KoLeo needs neighbours)"),
        (config.run.checkpoint_every > 0, "run.checkpoint_every", "must be positive"),
        (config.run.max_minutes is None or config.run.max_minutes > 0, "run.max_minutes", "must be positive"),
        (config.run.device in ("auto", "cpu", "cuda"), "run.device", "must be auto, cpu or cuda"),
        (config.dense.weight >= 0, "dense.weight", "must be >= 0 (0 switches the dense encoder off)"),
        (config.dense.stride in (4, 8), "dense.stride", "must be 4 or 8"),
        (config.dense.crop_size % (8 * config.dense.stride) == 0, "dense.crop_size",
         "must be a multiple of 8 x dense.stride"),
        (0.0 < config.dense.crop_scale[0] <= config.dense.crop_scale[1] <= 1.0, "dense.crop_scale",
         "must be [low, high] with 0 < low <= high <= 1"),
        (1 <= config.dense.min_gap <= config.dense.max_gap, "dense.min_gap", "must be >= 1 and <= dense.max_gap"),
        (config.dense.pairs >= 1, "dense.pairs", "must be >= 1"),
        (config.dense.radius >= 1, "dense.radius", "must be >= 1"),
        (config.dense.temperature > 0, "dense.temperature", "must be positive"),
        (0.0 <= config.dense.channel_dropout <= 1.0, "dense.channel_dropout", "must be in [0, 1]"),
        (0.0 <= config.dense.skip_weight <= 1.0, "dense.skip_weight", "must be in [0, 1]"),
        (config.dense.lr > 0, "dense.lr", "must be positive"),
    ]
    for ok, key, reason in checks:
        if not ok:
            raise ConfigError(f"{key}: {reason}")
    return config


def config_from_dict(overrides: dict | None) -> PretrainConfig:
    """Defaults with the nested overrides applied and validated."""
    config = PretrainConfig()
    if overrides:
        _apply(config, overrides, "")
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
            _apply(config, loaded, "")
            if not overrides:
                validate(config)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    if overrides:
        _apply(config, overrides, "")
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
