"""Uncertainty: per-frame signals from model outputs, and the strategy that picks the least certain frames.

VSS (semantic) models give class-probability maps; the pixel measures below (entropy, margin,
least confidence) map a (C, H, W) or (N, C, H, W) probability array to per-pixel uncertainty in
[0, 1], and `frame_uncertainty` reduces them per frame (mean, or mean of the top percentile of
pixels). VOS models give per-frame signals that need no labels: the propagation confidence
(`propagation_uncertainty` turns it into 1 - confidence) and the disagreement between masks
propagated forward and backward (`forward_backward_disagreement`). Higher always means less certain.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from segloop.platform.core.masks import object_ious
from segloop.selectors.constraints import Constraints, ConstraintTracker
from segloop.selectors.registry import register
from segloop.selectors.types import CandidatePool, Pick, SelectorError

PROBABILITY_TOLERANCE = 1e-3


def _as_probabilities(probs: np.ndarray) -> tuple[np.ndarray, bool]:
    """(N, C, H, W) float32 view of a (C, H, W) or (N, C, H, W) probability array, and whether it was 3-D."""
    array = np.asarray(probs)
    if array.ndim not in (3, 4):
        raise SelectorError(f"probabilities: expected (C, H, W) or (N, C, H, W), got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise SelectorError(f"probabilities: expected floats, got dtype {array.dtype}")
    single = array.ndim == 3
    array = array[None] if single else array
    if array.shape[1] < 2:
        raise SelectorError(f"probabilities: need at least 2 classes on axis 1, got {array.shape[1]}")
    return array.astype(np.float32, copy=False), single


def _check_frame(frame: np.ndarray) -> None:
    """Raise a SelectorError when one (C, H, W) map is not a probability distribution per pixel."""
    if not np.all(np.isfinite(frame)) or frame.min() < -PROBABILITY_TOLERANCE:
        raise SelectorError("probabilities: values must be finite and non-negative")
    sums = frame.sum(axis=0)
    if np.abs(sums - 1.0).max() > PROBABILITY_TOLERANCE * frame.shape[0]:
        raise SelectorError(
            f"probabilities: classes (axis -3) must sum to 1 per pixel; found sums in "
            f"[{sums.min():.4g}, {sums.max():.4g}] (apply softmax first)"
        )


def _per_frame(probs: np.ndarray, measure: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply a (C, H, W) -> (H, W) measure to each frame, validating each, with the input's rank."""
    array, single = _as_probabilities(probs)
    maps = np.empty((array.shape[0],) + array.shape[2:], dtype=np.float32)
    for index, frame in enumerate(array):
        _check_frame(frame)
        maps[index] = measure(frame)
    return maps[0] if single else maps


def _entropy(frame: np.ndarray) -> np.ndarray:
    """Shannon entropy over classes divided by log(C), in [0, 1]."""
    clipped = np.clip(frame, 1e-12, 1.0)
    return np.clip(-(clipped * np.log(clipped)).sum(axis=0) / np.log(frame.shape[0]), 0.0, 1.0)


def _margin(frame: np.ndarray) -> np.ndarray:
    """1 - (top-1 probability - top-2 probability)."""
    top_two = np.partition(frame, frame.shape[0] - 2, axis=0)[-2:]
    return np.clip(1.0 - (top_two[1] - top_two[0]), 0.0, 1.0)


def _least_confidence(frame: np.ndarray) -> np.ndarray:
    """(1 - top-1 probability) * C / (C - 1), in [0, 1]."""
    classes = frame.shape[0]
    return np.clip((1.0 - frame.max(axis=0)) * classes / (classes - 1), 0.0, 1.0)


def pixel_entropy(probs: np.ndarray) -> np.ndarray:
    """Per-pixel class entropy normalised by log(C): (C,H,W) -> (H,W) or (N,C,H,W) -> (N,H,W)."""
    return _per_frame(probs, _entropy)


def pixel_margin(probs: np.ndarray) -> np.ndarray:
    """Per-pixel 1 - (p_top1 - p_top2): (C,H,W) -> (H,W) or (N,C,H,W) -> (N,H,W)."""
    return _per_frame(probs, _margin)


def pixel_least_confidence(probs: np.ndarray) -> np.ndarray:
    """Per-pixel (1 - p_top1) scaled to [0, 1]: (C,H,W) -> (H,W) or (N,C,H,W) -> (N,H,W)."""
    return _per_frame(probs, _least_confidence)


PIXEL_MEASURES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "entropy": _entropy,
    "margin": _margin,
    "least_confidence": _least_confidence,
}


def reduce_pixels(maps: np.ndarray, reduction: str = "mean", top_percent: float = 5.0) -> np.ndarray | float:
    """Per-frame value of (H, W) or (N, H, W) uncertainty maps: 'mean', or 'top' = mean of the top percent."""
    array = np.asarray(maps, dtype=np.float32)
    if array.ndim not in (2, 3):
        raise SelectorError(f"uncertainty maps: expected (H, W) or (N, H, W), got shape {array.shape}")
    flat = array.reshape(1 if array.ndim == 2 else array.shape[0], -1)
    if reduction == "mean":
        values = flat.mean(axis=1, dtype=np.float64)
    elif reduction == "top":
        if not 0.0 < top_percent <= 100.0:
            raise SelectorError(f"top_percent: must be in (0, 100], got {top_percent}")
        count = max(1, int(np.ceil(flat.shape[1] * top_percent / 100.0)))
        top = np.partition(flat, flat.shape[1] - count, axis=1)[:, -count:]
        values = top.mean(axis=1, dtype=np.float64)
    else:
        raise SelectorError(f"reduction: expected 'mean' or 'top', got {reduction!r}")
    return float(values[0]) if array.ndim == 2 else values


def frame_uncertainty(
    probs: np.ndarray, measure: str = "entropy", reduction: str = "mean", top_percent: float = 5.0
) -> np.ndarray | float:
    """Per-frame uncertainty of VSS class probabilities: a float for (C,H,W), an (N,) array for (N,C,H,W)."""
    if measure not in PIXEL_MEASURES:
        raise SelectorError(f"measure: expected one of {sorted(PIXEL_MEASURES)}, got {measure!r}")
    return reduce_pixels(_per_frame(probs, PIXEL_MEASURES[measure]), reduction, top_percent)


def propagation_uncertainty(confidence: np.ndarray) -> np.ndarray:
    """1 - per-frame VOS propagation confidence (confidences must lie in [0, 1])."""
    values = np.asarray(confidence, dtype=np.float64)
    if values.ndim != 1:
        raise SelectorError(f"propagation confidence: expected a per-frame (N,) array, got shape {values.shape}")
    if not np.all(np.isfinite(values)) or values.min(initial=0.0) < 0.0 or values.max(initial=0.0) > 1.0:
        raise SelectorError("propagation confidence: values must lie in [0, 1]")
    return 1.0 - values


def forward_backward_disagreement(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """Per-frame 1 - mean IoU over objects between forward- and backward-propagated (N, H, W) label maps.

    Label 0 is background; frames where neither direction has any object score 0.
    """
    fwd, bwd = np.asarray(forward), np.asarray(backward)
    if fwd.shape != bwd.shape or fwd.ndim != 3:
        raise SelectorError(
            f"forward/backward masks: expected two (N, H, W) label maps of one shape, got {fwd.shape} and {bwd.shape}"
        )
    result = np.zeros(fwd.shape[0])
    for index in range(fwd.shape[0]):
        ious = object_ious(fwd[index], bwd[index])
        if ious:
            result[index] = 1.0 - float(np.mean(list(ious.values())))
    return result


def combine_signals(signals: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """Weighted sum of signals after rank-normalising each to [0, 1] (scales differ between signals)."""
    if not weights:
        raise SelectorError("combine_signals: give at least one weight")
    total = None
    for name, weight in weights.items():
        if name not in signals:
            raise SelectorError(f"combine_signals: unknown signal {name!r}; available: {sorted(signals)}")
        values = np.asarray(signals[name], dtype=np.float64)
        ranks = np.argsort(np.argsort(values, kind="stable"), kind="stable").astype(np.float64)
        normalised = ranks / max(values.size - 1, 1)
        total = weight * normalised if total is None else total + weight * normalised
    return total


@register("uncertainty")
def uncertainty(pool: CandidatePool, constraints: Constraints, *, signal: str | None = None) -> list[Pick]:
    """Least certain frames first, by one per-frame uncertainty signal of the pool (higher = less certain).

    `signal` names an entry of `pool.uncertainty` (e.g. entropy_mean, entropy_top, vos_fb_disagreement);
    it may be omitted when the pool carries exactly one. Ties go to the lower row.
    """
    values = pool.signal(signal)
    name = signal or next(iter(pool.uncertainty))
    tracker = ConstraintTracker(pool, constraints)
    candidates = np.flatnonzero(tracker.eligible)
    order = candidates[np.argsort(-values[candidates], kind="stable")]
    return tracker.take_in_order(order, values, lambda row: f"most uncertain: {name}={values[row]:.4g}")
