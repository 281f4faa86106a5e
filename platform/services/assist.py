"""Click assist for the mask editor, without downloaded weights: a box → a GrabCut mask proposal (OpenCV),
and SLIC superpixels (scikit-image) for the smart brush. Arrays in, arrays out; the editor applies the
results as ordinary, undoable edits.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


class AssistError(ValueError):
    """A box or image the assist cannot use; the message says which and why."""


@dataclass(frozen=True)
class GrabCutParams:
    """GrabCut settings: iterations, context margin around the box, and the working size cap (pixels)."""

    iterations: int = 5
    margin: float = 0.25
    max_side: int = 480


@dataclass(frozen=True)
class SuperpixelParams:
    """SLIC settings: about how many segments per frame and how compact they are."""

    segments: int = 1200
    compactness: float = 12.0
    sigma: float = 1.0


def clip_box(box, height: int, width: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) inside the image, x0 < x1 and y0 < y1, or AssistError naming the problem."""
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise AssistError(f"box: expected [x0, y0, x1, y1], got {box!r}") from None
    if not all(np.isfinite([x0, y0, x1, y1])):
        raise AssistError("box: coordinates must be finite numbers")
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    x0, y0 = max(int(round(x0)), 0), max(int(round(y0)), 0)
    x1, y1 = min(int(round(x1)), width), min(int(round(y1)), height)
    if x1 - x0 < 4 or y1 - y0 < 4:
        raise AssistError("box: draw a box of at least 4×4 pixels inside the frame")
    return x0, y0, x1, y1


def grabcut_proposal(image: np.ndarray, box, params: GrabCutParams = GrabCutParams()) -> np.ndarray:
    """A bool mask (image size) of the object inside `box` by GrabCut, computed on the box plus a margin."""
    height, width = image.shape[:2]
    x0, y0, x1, y1 = clip_box(box, height, width)
    mx, my = int((x1 - x0) * params.margin) + 8, int((y1 - y0) * params.margin) + 8
    cx0, cy0, cx1, cy1 = max(x0 - mx, 0), max(y0 - my, 0), min(x1 + mx, width), min(y1 + my, height)
    crop = np.ascontiguousarray(image[cy0:cy1, cx0:cx1, :3])
    scale = min(1.0, params.max_side / max(crop.shape[:2]))
    small = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else crop
    rect = (int((x0 - cx0) * scale), int((y0 - cy0) * scale),
            max(int((x1 - x0) * scale), 2), max(int((y1 - y0) * scale), 2))
    rect = (rect[0], rect[1], min(rect[2], small.shape[1] - rect[0] - 1), min(rect[3], small.shape[0] - rect[1] - 1))
    if rect[2] < 2 or rect[3] < 2:
        raise AssistError("box: too close to the frame border to separate object and background")
    mask = np.zeros(small.shape[:2], np.uint8)
    background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(cv2.cvtColor(small, cv2.COLOR_RGB2BGR), mask, rect, background, foreground, params.iterations,
                cv2.GC_INIT_WITH_RECT)
    chosen = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    if scale < 1:
        chosen = cv2.resize(chosen, (cx1 - cx0, cy1 - cy0), interpolation=cv2.INTER_NEAREST)
    result = np.zeros((height, width), bool)
    result[cy0:cy1, cx0:cx1] = chosen.astype(bool)
    result[:, :x0] = result[:, x1:] = False
    result[:y0] = result[y1:] = False
    return result


def superpixels(image: np.ndarray, params: SuperpixelParams = SuperpixelParams()) -> np.ndarray:
    """SLIC superpixel ids (int32, image size, 0..n-1) of an RGB frame."""
    from skimage.segmentation import slic

    if image.ndim != 3 or image.shape[2] < 3:
        raise AssistError(f"superpixels: expected an RGB image, got shape {image.shape}")
    segments = slic(image[..., :3], n_segments=params.segments, compactness=params.compactness, sigma=params.sigma,
                    start_label=0, channel_axis=-1)
    return segments.astype(np.int32)
