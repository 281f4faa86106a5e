"""Typed config: YAML overrides, clear errors naming the key, resolved config saved."""
from __future__ import annotations

import pytest
import yaml

from segloop.pretrain.config import ConfigError, config_from_dict, load_config, save_config


def test_defaults_validate():
    config = config_from_dict(None)
    assert config.model.backbone == "vit_tiny_patch16_224"  # cheap ViT beside the dense encoder on a CPU
    assert config.optim.momentum_teacher == 0.992
    assert config.dense.weight > 0 and config.dense.stride == 8 and config.loss.random_walk_weight == 0


def test_yaml_overrides_apply_with_int_to_float(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 1\nloss:\n  mask_ratio: [0.2, 0.4]\nrun:\n  max_minutes: 2\n")
    config = load_config(path)
    assert config.optim.lr == 1.0 and isinstance(config.optim.lr, float)
    assert config.loss.mask_ratio == (0.2, 0.4)
    assert config.run.max_minutes == 2.0


@pytest.mark.parametrize("text, key", [
    ("optim:\n  lrr: 0.1\n", "optim.lrr: unknown key"),
    ("nonsense: 1\n", "nonsense: unknown key"),
    ("run:\n  steps: ten\n", "run.steps: expected an integer"),
    ("run:\n  steps: 2.5\n", "run.steps: expected an integer"),
    ("model:\n  compile: 1\n", "model.compile: expected true/false"),
    ("loss:\n  mask_ratio: [0.1]\n", "loss.mask_ratio: expected a list of 2"),
    ("data: 3\n", "data: expected a mapping"),
    ("loss:\n  centering: softmax\n", "loss.centering: must be"),
    ("run:\n  max_minutes: -1\n", "run.max_minutes: must be positive"),
])
def test_bad_yaml_names_the_key(tmp_path, text, key):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert key in str(info.value) and str(path) in str(info.value)


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
