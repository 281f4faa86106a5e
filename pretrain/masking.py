"""Block-wise patch masking for iBOT's masked-image-modelling loss.

"BEiT: BERT Pre-Training of Image Transformers" (Bao et al., 2021), as used by "iBOT" (Zhou et al.,
2022) and DINOv2: masked patches form random rectangles of random aspect ratio; the mask is then
completed at random so that exactly the requested number of patches is masked.
"""
from __future__ import annotations

import math
import random

import numpy as np


def block_mask(
    height: int,
    width: int,
    num_masked: int,
    rng: random.Random,
    min_block: int = 4,
    aspect: tuple[float, float] = (0.3, 1 / 0.3),
) -> np.ndarray:
    """A (height, width) bool mask with exactly num_masked True entries, mostly in blocks."""
    total = height * width
    num_masked = max(0, min(int(num_masked), total))
    mask = np.zeros((height, width), dtype=bool)
    log_aspect = (math.log(aspect[0]), math.log(aspect[1]))
    for _attempt in range(10 * max(1, num_masked)):
        missing = num_masked - int(mask.sum())
        if missing <= 0:
            break
        target = rng.uniform(min(min_block, missing), max(min_block, missing))
        ratio = math.exp(rng.uniform(*log_aspect))
        h = int(round(math.sqrt(target * ratio)))
        w = int(round(math.sqrt(target / ratio)))
        if not (1 <= h <= height and 1 <= w <= width):
            continue
        top, left = rng.randint(0, height - h), rng.randint(0, width - w)
        block = mask[top:top + h, left:left + w]
        new = int((~block).sum())
        if 0 < new <= missing:
            block[...] = True
    missing = num_masked - int(mask.sum())
    if missing > 0:
        free = np.flatnonzero(~mask.reshape(-1))
        chosen = rng.sample(list(free), missing)
        mask.reshape(-1)[chosen] = True
    return mask


def sample_masks(
    count: int,
    height: int,
    width: int,
    ratio_range: tuple[float, float],
    probability: float,
    rng: random.Random,
) -> np.ndarray:
    """(count, height, width) masks: a `probability` share of them masked at a ratio spread over the range.

    As in DINOv2's collate, the masked images get evenly spaced ratios across the range and the
    others get an empty mask.
    """
    masks = np.zeros((count, height, width), dtype=bool)
    num_masked_images = int(round(count * probability))
    low, high = ratio_range
    ratios = np.linspace(low, high, num_masked_images + 1)
    order = list(range(count))
    rng.shuffle(order)
    for slot, index in enumerate(order[:num_masked_images]):
        ratio = rng.uniform(ratios[slot], ratios[slot + 1])
        masks[index] = block_mask(height, width, int(round(ratio * height * width)), rng)
    return masks
