"""Backbones: any timm ViT by name, randomly initialised or loaded from a local weights file or run folder."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from segloop.platform.core.backbones import DEFAULT_BACKBONE
from segloop.pretrain.checkpoint import TEACHER_NAME


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


def create_backbone(
    name: str = DEFAULT_BACKBONE,
    weights: str | Path | None = None,
    img_size: int | None = None,
    **kwargs,
) -> nn.Module:
    """A timm model without classifier (`dynamic_img_size` for ViTs); local weights if given.

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
    if weights is None:
        return timm.create_model(name, pretrained=False, **extra)
    path = weights_file(weights)
    try:
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **extra)
    except Exception as exc:  # timm raises many kinds for a bad file; name the file in one message
        raise BackboneError(f"{path}: cannot load weights into {name}: {exc}") from None


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
