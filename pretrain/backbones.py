"""Backbones: any timm ViT by name, randomly initialised or loaded from a local weights file."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class BackboneError(ValueError):
    """A backbone name or weights file that cannot be used; the message says which and why."""


def create_backbone(
    name: str = "vit_small_patch16_224",
    weights: str | Path | None = None,
    img_size: int | None = None,
    **kwargs,
) -> nn.Module:
    """A timm model without classifier (`dynamic_img_size` for ViTs); local weights if given.

    `weights` is a local file in timm's key layout (.pth/.pt/.bin/.safetensors), e.g. a segloop
    pretraining checkpoint's `teacher_backbone.pth` or a DINOv2 file; nothing is downloaded.
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
    path = Path(weights)
    if not path.is_file():
        raise BackboneError(f"{path}: weights file does not exist")
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
