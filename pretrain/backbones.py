"""Backbones: any timm ViT by name, randomly initialised or loaded from a local weights file or run folder."""
from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from segloop.platform.core.backbones import DEFAULT_BACKBONE
from segloop.pretrain.checkpoint import CHECKPOINT_NAME, CONFIG_NAME, TEACHER_NAME


class BackboneError(ValueError):
    """A backbone name or weights file that cannot be used; the message says which and why."""


def weights_file(weights: str | Path) -> Path:
    """The weights file `weights` names: the file itself, or a `segloop pretrain --out` folder's teacher backbone."""
    path = Path(weights)
    if path.is_dir():
        if not (path / TEACHER_NAME).is_file():
            raise BackboneError(f"{path}: no {TEACHER_NAME} in this folder (expected a `segloop pretrain --out` "
                                "folder or a weights file)")
        return path / TEACHER_NAME
    if not path.is_file():
        raise BackboneError(f"{path}: weights file does not exist")
    return path


def backbone_for(weights: str | Path | None, backbone: str | None = None) -> str:
    """The backbone `weights` were trained as when their `segloop pretrain` run records it, else `backbone`, else the
    default: weights only load into the architecture they were trained as."""
    return (_recorded_backbone(weights) if weights is not None else None) or backbone or DEFAULT_BACKBONE


def _recorded_backbone(weights: str | Path) -> str | None:
    """The backbone a `segloop pretrain` run records in its config.yaml, for the run folder or a file in it."""
    import yaml

    path = Path(weights)
    try:
        config = yaml.safe_load(((path if path.is_dir() else path.parent) / CONFIG_NAME).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    model = config.get("model") if isinstance(config, dict) else None
    name = model.get("backbone") if isinstance(model, dict) else None
    return name if isinstance(name, str) else None


def create_backbone(
    name: str = DEFAULT_BACKBONE,
    weights: str | Path | None = None,
    img_size: int | None = None,
    init_seed: int | None = None,
    **kwargs,
) -> nn.Module:
    """A timm model without classifier (`dynamic_img_size` for ViTs); local weights if given.

    `init_seed` makes a random init reproducible without touching the global random state.

    `weights` is a local file in timm's key layout (.pth/.pt/.bin/.safetensors), e.g. a segloop
    pretraining run's `teacher_backbone.pth` or a DINOv2 file, or a `segloop pretrain --out` folder
    (its `teacher_backbone.pth`); nothing is downloaded.
    """
    import timm

    if not timm.is_model(name):
        raise BackboneError(f"unknown timm model name {name!r}")
    extra = dict(num_classes=0, **kwargs)
    if "vit" in name or "deit" in name or "eva" in name:
        extra.setdefault("dynamic_img_size", True)
    if img_size is not None:
        extra["img_size"] = img_size
    if init_seed is None:
        model = timm.create_model(name, pretrained=False, **extra)
    else:
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            model = timm.create_model(name, pretrained=False, **extra)
    if weights is not None:
        load_weights(model, name, weights_file(weights))
    return model


def load_weights(model: nn.Module, name: str, path: Path) -> None:
    """Load a weights file into a timm model as timm's factory would (its checkpoint filter: key layouts, position
    embeddings resized); BackboneError when the file cannot be read or leaves any tensor of the model unloaded."""
    import importlib

    from timm.models import load_pretrained

    missing: list[str] = []
    hook = model.register_load_state_dict_post_hook(lambda _, keys: missing.extend(keys.missing_keys))
    config = {key: value for key, value in model.pretrained_cfg.items() if key not in ("url", "hf_hub_id")}
    family = importlib.import_module(type(model).__module__)
    try:
        load_pretrained(model, pretrained_cfg={**config, "file": str(path), "custom_load": False}, num_classes=0,
                        filter_fn=getattr(family, "checkpoint_filter_fn", None), strict=False)
    except Exception as exc:  # timm and torch raise many kinds for a bad file; name the file in one message
        raise BackboneError(f"{path}: cannot load weights into {name}: {_load_failure(path, exc)}") from None
    finally:
        hook.remove()
    if missing:
        total = len(model.state_dict())
        raise BackboneError(f"{path}: not weights of {name}: {len(missing)} of its {total} tensors are not in the "
                            f"file (e.g. {missing[0]!r}), so they would keep their random initialisation")


def _load_failure(path: Path, exc: Exception) -> str:
    """Why a weights file did not load: unreadable as weights, or the first mismatch it has with the model."""
    from timm.models import load_state_dict

    if Path(path).name == CHECKPOINT_NAME and (Path(path).parent / TEACHER_NAME).is_file():
        return (f"it is a pretrain run's resume state, not weights: give the run folder {Path(path).parent} (its "
                f"{TEACHER_NAME} is the encoder)")
    try:
        load_state_dict(str(path))
    except Exception:  # any failure to read means the same thing to the user
        return "not a PyTorch (.pth/.pt/.bin) or safetensors weights file"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = lines[1] if len(lines) > 1 and lines[0].startswith("Error(s) in loading state_dict") else (
        lines[0] if lines else "unknown reason")
    return re.sub(r"torch\.Size\((\[[^\]]*\])\)", r"\1", detail)[:300]


def patch_size(model: nn.Module) -> int:
    """Patch stride of a timm ViT (16 for vit_*_patch16_*)."""
    embed = getattr(model, "patch_embed", None)
    if embed is None:
        raise BackboneError(f"{type(model).__name__} has no patch_embed: not a ViT")
    size = embed.patch_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def patch_tokens(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Patch features (B, h, w, C) of a ViT for images (B, 3, H, W) with H, W multiples of the patch."""
    tokens = model.forward_features(images)
    prefix = int(getattr(model, "num_prefix_tokens", 1))
    grid_h, grid_w = images.shape[-2] // patch_size(model), images.shape[-1] // patch_size(model)
    patches = tokens[:, prefix:, :]
    return patches.reshape(images.shape[0], grid_h, grid_w, patches.shape[-1])
