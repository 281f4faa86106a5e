"""Click assist: GrabCut finds a disc from a box around it; SLIC superpixels follow colour edges; bad boxes refused."""
from __future__ import annotations

import numpy as np
import pytest

from segloop.platform.services import assist


def disc_scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A noisy green background with a noisy red disc of radius 30 at (80, 60); (image, disc mask)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:120, :160]
    disc = (xx - 80) ** 2 + (yy - 60) ** 2 <= 30 ** 2
    image = np.where(disc[..., None], [200, 40, 40], [40, 160, 60]).astype(np.float64)
    image += rng.normal(0, 12, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), disc


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks."""
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_grabcut_finds_the_object_inside_the_box() -> None:
    """A box with 10 px of background around the disc gives a proposal with IoU > 0.9, nothing outside the box."""
    image, disc = disc_scene()
    proposal = assist.grabcut_proposal(image, [40, 20, 120, 100])
    assert iou(proposal, disc) > 0.9
    assert not proposal[:, :40].any() and not proposal[:, 120:].any() and not proposal[:20].any()


def test_superpixels_do_not_cross_the_disc_edge() -> None:
    """Almost every SLIC segment lies on one side of the disc's edge (≥ 95 % of its pixels)."""
    image, disc = disc_scene(1)
    segments = assist.superpixels(image, assist.SuperpixelParams(segments=150))
    assert segments.shape == disc.shape and segments.min() == 0 and 50 <= segments.max() + 1 <= 300
    purity = [max(disc[segments == s].mean(), 1 - disc[segments == s].mean()) for s in np.unique(segments)]
    assert np.mean(np.asarray(purity) >= 0.95) >= 0.9


@pytest.mark.parametrize("box, message", [
    ([1, 2, 3], "x0, y0, x1, y1"),
    ([0, 0, float("nan"), 5], "finite"),
    ([10, 10, 12, 12], "at least 4"),
    ([500, 500, 600, 600], "at least 4"),
])
def test_bad_boxes_are_refused_with_the_reason(box, message) -> None:
    """Boxes that cannot be used raise AssistError saying why."""
    with pytest.raises(assist.AssistError, match=message):
        assist.grabcut_proposal(disc_scene()[0], box)
