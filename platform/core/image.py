"""Frames as arrays: reading an image file as RGB, the working size a network sees, ImageNet normalisation."""
from __future__ import annotations

import os

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ROUNDING_RULES = ("round", "nearest", "floor")
MAX_SIDE = 4096  # px: a working short side above this is a typo (a 4096-px side already takes GBs per frame)


class ImageError(ValueError):
    """An image file or size that cannot be used; the message names the file or value and why."""


def read_rgb(path: str | os.PathLike, error: type[ValueError] = ImageError) -> np.ndarray:
    """An image file as H×W×3 uint8 RGB; a missing or unreadable file raises `error` naming it."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise error(f"{path}: missing or unreadable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def working_size(height: int, width: int, short_side: int, patch: int, *, rounding: str = "round",
                 long_multiple: int | None = None, error: type[ValueError] = ImageError) -> tuple[int, int]:
    """(height, width) at which a network sees a height×width frame: short side `short_side`, aspect kept,
    both sides multiples of `patch`.

    `rounding` is how a scaled side becomes a patch multiple:
    - "round": to whole pixels first, then down to the patch (at least one patch; the feature cache);
    - "nearest": to the nearest patch multiple (at least one patch; pretrain embeddings);
    - "floor": the short side is `short_side` and the long side is floored to `long_multiple` (default the
      patch), then both are floored to the patch (DINO's DAVIS protocol); less than a patch raises `error`.
    """
    if rounding not in ROUNDING_RULES:
        raise ValueError(f"rounding: expected one of {', '.join(ROUNDING_RULES)}, got {rounding!r}")
    # The long side is capped at MAX_SIDE too: a 2000x16 strip at short side 480 was 60000 px long (112k ViT
    # tokens per frame, effectively forever); extreme aspect ratios work at a smaller short side instead.
    short_side = min(short_side, max(1, int(MAX_SIDE * min(height, width) / max(height, width))))
    if rounding == "floor":
        return _floored_size(height, width, short_side, patch, long_multiple or patch, error)
    scale = short_side / min(height, width)
    if rounding == "round":
        return (max(patch, int(round(height * scale)) // patch * patch),
                max(patch, int(round(width * scale)) // patch * patch))
    return max(patch, round(height * scale / patch) * patch), max(patch, round(width * scale / patch) * patch)


def _floored_size(height: int, width: int, short_side: int, patch: int, multiple: int,
                  error: type[ValueError]) -> tuple[int, int]:
    """The "floor" rule of `working_size`."""
    if height <= width:
        new_h, new_w = short_side, int((short_side * width / height) // multiple * multiple)
    else:
        new_h, new_w = int((short_side * height / width) // multiple * multiple), short_side
    new_h, new_w = (new_h // patch) * patch, (new_w // patch) * patch
    if new_h < patch or new_w < patch:
        raise error(f"frame {width}x{height} at short side {short_side} (multiple {multiple}) "
                    f"is smaller than one {patch}px patch")
    return new_h, new_w


def imagenet_normalise(images, device: str = "cpu"):
    """uint8 (B, H, W, 3) array or tensor -> ImageNet-normalised float (B, 3, H, W) tensor on `device`."""
    import torch

    batch = torch.as_tensor(np.asarray(images)).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    return (batch - mean) / std


def image_tensor(images: np.ndarray, device: str):
    """uint8 (B, 3, H, W) -> float in [-1, 1]."""
    import torch

    return torch.as_tensor(images, device=device).float().div_(127.5).sub_(1.0)
