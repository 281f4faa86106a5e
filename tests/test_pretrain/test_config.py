"""Typed config: YAML overrides, clear errors naming the key, resolved config saved."""
from __future__ import annotations

import re

import pytest
import yaml

from segloop.platform.core.errors import ValidationError
from segloop.platform.core.specs import coerce
from segloop.pretrain.config import (
    ConfigError,
    PretrainConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)


def test_defaults_validate():
    config = config_from_dict(None)
    assert config.model.backbone == "vit_tiny_patch16_224"  # cheap ViT beside the dense encoder on a CPU
    assert config.optim.momentum_teacher == 0.992
    assert config.dense.weight > 0 and config.dense.stride == 8 and config.loss.random_walk_weight == 0
    assert coerce(PretrainConfig, config_to_dict(config)) == config  # the defaults satisfy every field's rules


def test_yaml_overrides_apply_with_int_to_float(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 1\nloss:\n  mask_ratio: [0.2, 0.4]\nrun:\n  max_minutes: 2\n")
    config = load_config(path)
    assert config.optim.lr == 1.0 and isinstance(config.optim.lr, float)
    assert config.loss.mask_ratio == (0.2, 0.4)
    assert config.run.max_minutes == 2.0


@pytest.mark.parametrize("text, key", [
    ("optim:\n  lrr: 0.1\n", "optim.lrr: unknown field"),
    ("nonsense: 1\n", "nonsense: unknown field"),
    ("run:\n  steps: ten\n", "run.steps: expected an integer"),
    ("run:\n  steps: 2.5\n", "run.steps: expected an integer"),
    ("model:\n  compile: 1\n", "model.compile: expected true/false"),
    ("loss:\n  mask_ratio: [0.1]\n", "loss.mask_ratio: expected a list of 2 values"),
    ("data: 3\n", "data: expected a mapping"),
    ("loss:\n  centering: softmax\n", "loss.centering: must be"),
    ("run:\n  max_minutes: -1\n", "run.max_minutes: must be > 0"),
    ("run:\n  steps: 0\n", "run.steps: must be >= 1"),
    ("run:\n  device: tpu\n", "run.device: must be one of auto, cpu, cuda"),
    ("dense:\n  stride: 16\n", "dense.stride: must be one of 4, 8"),
    ("dense:\n  channel_dropout: 1.5\n", "dense.channel_dropout: must be <= 1"),
    ("data:\n  min_frame_gap: 9\n", "data.min_frame_gap: must be >= 0 and <= data.max_frame_gap"),
])
def test_bad_yaml_names_the_key(tmp_path, text, key):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert key in str(info.value) and str(path) in str(info.value)
    assert isinstance(info.value, ValidationError)


@pytest.mark.parametrize(("override", "message"), [  # each ran, crashed or diverged without a word on the key
    ({"run": {"log_every": 0}}, "run.log_every: must be >= 1, got 0"),  # ZeroDivisionError traceback
    ({"run": {"seed": -1}}, "run.seed: must be >= 0, got -1"),
    ({"model": {"head_out_dim": 0}}, "model.head_out_dim: must be >= 1, got 0"),  # trained a head of no outputs
    ({"model": {"head_layers": 0}}, "model.head_layers: must be >= 1, got 0"),
    ({"model": {"drop_path_rate": 1.0}}, "model.drop_path_rate: must be < 1, got 1"),
    ({"data": {"clip_jitter": 1.0}}, "data.clip_jitter: must be < 1, got 1"),
    ({"loss": {"random_walk_edge_dropout": 1.0}}, "loss.random_walk_edge_dropout: must be < 1, got 1"),
    ({"loss": {"student_temp": 0}}, "loss.student_temp: must be > 0, got 0"),  # "diverged: lower optim.lr"
    ({"loss": {"koleo_weight": -1}}, "loss.koleo_weight: must be >= 0, got -1"),
    ({"optim": {"lr": -1}}, "optim.lr: must be > 0, got -1"),  # torch's "Invalid learning rate: -1.0"
    ({"optim": {"momentum_teacher": 2}}, "optim.momentum_teacher: must be <= 1, got 2"),
    ({"optim": {"clip_grad": -1}}, "optim.clip_grad: must be >= 0, got -1"),
    ({"data": {"cache_frames": -1}}, "data.cache_frames: must be >= 0, got -1"),
    ({"data": {"color_jitter": 1.5}}, "data.color_jitter: must be <= 1, got 1.5"),
    ({"data": {"global_scale": [0.5, 0.2]}}, "data.global_scale: must be [low, high] with 0 < low <= high <= 1"),
    ({"data": {"local_scale": [0.0, 0.3]}}, "data.local_scale: must be [low, high] with 0 < low <= high <= 1"),
])
def test_values_training_cannot_use_are_refused_naming_the_key(override: dict, message: str):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}"):
        config_from_dict(override)


def test_overrides_are_checked_after_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("run:\n  steps: 9\n")
    assert load_config(path, {"optim": {"lr": 0.1}}).run.steps == 9
    with pytest.raises(ConfigError, match="dense.temperature: must be > 0, got 0"):
        load_config(path, {"dense": {"temperature": 0}})


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "broken.yaml").write_text("run: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")


def test_saved_config_round_trips(tmp_path):
    config = config_from_dict({"run": {"steps": 7}, "loss": {"mask_ratio": [0.2, 0.3]}})
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["run"]["steps"] == 7
