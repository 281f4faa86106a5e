"""Backbone presets in one registry: the timm ViTs segloop knows, their patch, width and default sizes.

`DEFAULT_BACKBONE` is the one default everywhere (CLI, jobs, UI forms): ViT-Ti/16, the backbone the demo
pretrains and fine-tunes, because it trains and runs in minutes on a laptop CPU; bigger ones are a choice.
"""
from __future__ import annotations

from dataclasses import dataclass

from segloop.platform.core.errors import ValidationError


@dataclass(frozen=True)
class BackbonePreset:
    """A timm ViT: its name, patch stride, embedding width and the sizes it is used at by default."""

    name: str
    patch: int
    dim: int
    img_size: int
    short_side: int
    summary: str


PRESETS: dict[str, BackbonePreset] = {p.name: p for p in (
    BackbonePreset("vit_tiny_patch16_224", 16, 192, 224, 192, "ViT-Ti/16: minutes on a CPU (the default)"),
    BackbonePreset("vit_small_patch16_224", 16, 384, 224, 480, "ViT-S/16 (DINO's DAVIS backbone)"),
    BackbonePreset("vit_small_patch8_224", 8, 384, 224, 480, "ViT-S/8: stride 8, best propagation, slow on a CPU"),
    BackbonePreset("vit_base_patch16_224", 16, 768, 224, 480, "ViT-B/16"),
    BackbonePreset("vit_base_patch8_224", 8, 768, 224, 480, "ViT-B/8: needs a GPU"),
    BackbonePreset("vit_small_patch14_dinov2", 14, 384, 224, 448, "DINOv2 ViT-S/14 (local weights file)"),
    BackbonePreset("vit_base_patch14_dinov2", 14, 768, 224, 448, "DINOv2 ViT-B/14 (local weights file)"),
)}

DEFAULT_BACKBONE = "vit_tiny_patch16_224"
BACKBONE_NAMES: tuple[str, ...] = tuple(PRESETS)


def get_backbone(name: str) -> BackbonePreset:
    """The preset called `name`, or ValidationError listing the known ones."""
    if name not in PRESETS:
        raise ValidationError(f"backbone {name!r} is unknown; known backbones: {', '.join(PRESETS)}")
    return PRESETS[name]


def default_backbone() -> BackbonePreset:
    """The preset used when nobody chose a backbone."""
    return PRESETS[DEFAULT_BACKBONE]
