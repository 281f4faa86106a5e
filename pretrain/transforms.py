"""DINO multi-crop augmentations on PIL images, driven by an explicit `random.Random`.

"Emerging Properties in Self-Supervised Vision Transformers" (DINO, Caron et al., 2021): random
resized crops, flips, colour jitter, grayscale, Gaussian blur and solarisation, with the
asymmetric blur/solarisation of the two global views. Every random choice comes from the `rng`
argument so that a sample is a pure function of its seed (exact resume, any number of workers).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from segloop.platform.core.image import IMAGENET_MEAN, IMAGENET_STD

Box = tuple[int, int, int, int]


def resized_crop_box(width: int, height: int, scale: tuple[float, float], rng: random.Random,
                     ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Box:
    """A (left, top, right, bottom) box covering a random area share and aspect ratio (RandomResizedCrop)."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            left, top = rng.randint(0, width - w), rng.randint(0, height - h)
            return left, top, left + w, top + h
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def crop_resize(image: Image.Image, box: Box, size: int) -> Image.Image:
    """The box of the image resized to size x size (bicubic, after an integer box reduction down to twice the size)."""
    return image.resize((size, size), Image.BICUBIC, box=box, reducing_gap=2.0)  # 3x faster, within 0.5 grey levels


def _shift_hue(image: Image.Image, shift: float) -> Image.Image:
    """The image with its hue rotated by `shift` turns (-0.5..0.5)."""
    hsv = np.asarray(image.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(round(shift * 255))) % 256
    return Image.fromarray(hsv, mode="HSV").convert("RGB")


def color_jitter(image: Image.Image, rng: random.Random, brightness: float = 0.4, contrast: float = 0.4,
                 saturation: float = 0.2, hue: float = 0.1) -> Image.Image:
    """Brightness, contrast, saturation and hue changes in random order (torchvision ColorJitter)."""
    ops = [0, 1, 2, 3]
    rng.shuffle(ops)
    for op in ops:
        if op == 0 and brightness:
            image = ImageEnhance.Brightness(image).enhance(rng.uniform(1 - brightness, 1 + brightness))
        elif op == 1 and contrast:
            image = ImageEnhance.Contrast(image).enhance(rng.uniform(1 - contrast, 1 + contrast))
        elif op == 2 and saturation:
            image = ImageEnhance.Color(image).enhance(rng.uniform(1 - saturation, 1 + saturation))
        elif op == 3 and hue:
            image = _shift_hue(image, rng.uniform(-hue, hue))
    return image


@dataclass
class PhotometricAugment:
    """DINO's photometric pipeline for one view: jitter, grayscale, blur, solarisation with given probabilities."""

    jitter_probability: float = 0.8
    grayscale_probability: float = 0.2
    blur_probability: float = 0.5
    solarize_probability: float = 0.0

    def __call__(self, image: Image.Image, rng: random.Random) -> Image.Image:
        """The augmented image."""
        if rng.random() < self.jitter_probability:
            image = color_jitter(image, rng)
        if rng.random() < self.grayscale_probability:
            image = ImageOps.grayscale(image).convert("RGB")
        if rng.random() < self.blur_probability:
            radius = rng.uniform(0.1, 2.0) * image.width / 224
            image = image.filter(ImageFilter.GaussianBlur(radius=radius))
        if rng.random() < self.solarize_probability:
            image = ImageOps.solarize(image, threshold=128)
        return image


def to_tensor(image: Image.Image) -> torch.Tensor:
    """(3, H, W) float tensor normalised with ImageNet statistics."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    array = (array - np.asarray(IMAGENET_MEAN, dtype=np.float32)) / np.asarray(IMAGENET_STD, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def maybe_flip(image: Image.Image, rng: random.Random) -> Image.Image:
    """The image mirrored left-right with probability 1/2."""
    return image.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else image

