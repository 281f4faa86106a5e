"""Atomic checkpoints: the full training state for exact resume, and the teacher backbone in timm's
key layout (loadable with `timm.create_model(name, pretrained=True, num_classes=0,
pretrained_cfg_overlay=dict(file=...))` or `segloop.pretrain.backbones.create_backbone(name, weights=...)`).
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segloop.platform.core.storage import atomic_path, read_torch_file
from segloop.pretrain.config import DENSE_LAYOUT, dense_encoder_on

CHECKPOINT_NAME = "checkpoint.pth"
TEACHER_NAME = "teacher_backbone.pth"
CONFIG_NAME = "config.yaml"  # the run's resolved PretrainConfig


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from; the message names the file and the reason."""


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file in the same folder, then rename over the target."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def rng_state() -> dict:
    """Python, NumPy, torch (and CUDA) random states."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Set the random states saved by rng_state."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def teacher_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The teacher backbone's weights on CPU in float32 (timm key layout, no classifier)."""
    backbone = model.teacher["backbone"]
    backbone = getattr(backbone, "_orig_mod", backbone)
    return {k: v.detach().float().cpu().clone() for k, v in backbone.state_dict().items()}


def save_training_state(out_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int,
                        samples_seen: int, config: dict, world_size: int, elapsed_s: float = 0.0) -> Path:
    """Write checkpoint.pth (full state, with the run's elapsed seconds so far) and teacher_backbone.pth, both
    atomically."""
    state = {
        "step": step,
        "elapsed_s": float(elapsed_s),
        "samples_seen": samples_seen,
        "world_size": world_size,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": rng_state(),
        "config": config,
    }
    atomic_save(teacher_state_dict(model), out_dir / TEACHER_NAME)
    atomic_save(state, out_dir / CHECKPOINT_NAME)
    return out_dir / CHECKPOINT_NAME


def load_training_state(path: Path) -> dict:
    """The dict written by save_training_state."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint to resume from")
    state = read_torch_file(path, "checkpoint", CheckpointError, weights_only=False)
    missing = {"step", "model", "optimizer", "rng", "config"} - set(state)
    if missing:
        raise CheckpointError(f"{path}: not a segloop pretraining checkpoint (missing {sorted(missing)})")
    return state


def _check_same_parts(path: Path, saved: dict, current: dict) -> None:
    """CheckpointError when dense.weight adds or drops the dense encoder."""
    was, now = saved.get("dense", {}).get("weight", 0.0), current.get("dense", {}).get("weight", 0.0)
    had, has = dense_encoder_on(was), dense_encoder_on(now)
    if had != has:
        raise CheckpointError(f"{path}: checkpoint has {'a' if had else 'no'} dense encoder (dense.weight={was!r}) "
                              f"but this run has {'one' if has else 'none'} (dense.weight={now!r})")


EXECUTION_ONLY = {("data", "num_workers"), ("optim", "fused"), ("run", "checkpoint_every"), ("run", "log_every"),
                  ("run", "device"), ("run", "bf16")}  # how a run executes, not what it learns: free to change


def _schedule_fields(saved: dict, current: dict) -> list[tuple[str, str]]:
    """The data, loss, optimiser and run settings a resumed run must share with its checkpoint: the schedules and
    crops depend on them (a changed --steps or --img-size resumed with a jump in the learning rate). With a time
    budget the horizon is the budget, so `run.steps` may change."""
    fields = []
    for section in ("data", "loss", "optim", "run"):
        for key in sorted(set(saved.get(section, {})) | set(current.get(section, {}))):
            timed = key == "steps" and saved.get("run", {}).get("max_minutes") is not None
            if (section, key) not in EXECUTION_ONLY and not timed:
                fields.append((section, key))
    return fields


def check_resumable(path: Path, saved: dict, current: dict, world_size: int) -> None:
    """Raise CheckpointError if the run's config differs from the checkpoint's in a way resume cannot honour."""
    fixed = [("model", "backbone"), ("model", "head_out_dim"), ("model", "head_bottleneck_dim"),
             ("model", "head_hidden_dim"), ("model", "head_layers"), *(("dense", name) for name in DENSE_LAYOUT)]
    # (run.batch_size and run.seed are among the schedule fields)
    for section, key in fixed + _schedule_fields(saved, current):
        was, now = saved.get(section, {}).get(key), current.get(section, {}).get(key)
        if was != now:
            raise CheckpointError(f"{path}: checkpoint has {section}.{key}={was!r} but this run has {now!r}")
    _check_same_parts(path, saved, current)
    if saved.get("world_size", 1) != world_size:
        raise CheckpointError(f"{path}: checkpoint was written by {saved.get('world_size')} processes, "
                              f"this run has {world_size}")
