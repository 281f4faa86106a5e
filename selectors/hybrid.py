"""Hybrid: uncertainty-weighted diversity (uncertain frames that are also far from what is covered)."""
from __future__ import annotations

import math

import numpy as np

from segloop.selectors.constraints import Constraints, ConstraintTracker
from segloop.selectors.diversity import DEVICES, ConstrainedFarthestFirst
from segloop.selectors.registry import MAX_PREFILTER_FACTOR, Rule, register
from segloop.selectors.types import CandidatePool, Pick


def minmax(values: np.ndarray) -> np.ndarray:
    """Values rescaled to [0, 1] (all zeros when constant)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0 or values.max() <= values.min():
        return np.zeros_like(values)
    return (values - values.min()) / (values.max() - values.min())


@register("hybrid", mode=Rule(choices=("prefilter", "weighted")),
          prefilter_factor=Rule(low=1.0, high=MAX_PREFILTER_FACTOR), uncertainty_weight=Rule(low=0.0, high=1.0),
          device=Rule(choices=DEVICES))
def hybrid(
    pool: CandidatePool, constraints: Constraints, *, signal: str | None = None, mode: str = "prefilter",
    prefilter_factor: float = 5.0, uncertainty_weight: float = 0.5, device: str = "auto",
) -> list[Pick]:
    """Uncertainty-weighted diversity: k-center among the most uncertain frames, or a weighted greedy.

    mode 'prefilter': keep the prefilter_factor x budget most uncertain eligible frames, then run
    k-center among them seeded with the labeled frames (the first pick, when nothing is labeled, is
    the most uncertain frame); any budget left is spent by k-center over all eligible frames.
    mode 'weighted': each step picks the frame maximising (1 - w) * d / d_max + w * u, with d its
    distance to the nearest covered frame and u its min-max normalised uncertainty, w = uncertainty_weight.
    """
    values = pool.signal(signal)
    tracker = ConstraintTracker(pool, constraints)
    if tracker.done:
        return []
    if mode == "prefilter":
        _prefilter_kcenter(pool, tracker, values, prefilter_factor, device)
    else:
        _weighted_greedy(pool, tracker, values, uncertainty_weight, device)
    return tracker.picks()


def _prefilter_kcenter(
    pool: CandidatePool, tracker: ConstraintTracker, values: np.ndarray, factor: float, device: str
) -> None:
    """k-center among the top-M uncertain eligible frames, then among all eligible frames."""
    eligible = np.flatnonzero(tracker.eligible)
    keep = min(eligible.size, int(math.ceil(factor * tracker.constraints.budget)))
    top = eligible[np.argsort(-values[eligible], kind="stable")[:keep]]
    top = np.sort(top)
    traversal = ConstrainedFarthestFirst(pool, tracker, top, device)
    if not traversal.seeded:
        first = int(top[np.argmax(values[top])])
        traversal.take(first, float(values[first]), f"first pick: most uncertain frame (u={values[first]:.4g})")
    traversal.run(lambda row, d: f"k-center among the {keep} most uncertain: d={d:.4g}, u={values[row]:.4g}")
    if not tracker.done:
        rest = ConstrainedFarthestFirst(pool, tracker, np.flatnonzero(tracker.eligible), device)
        rest.add_pool_rows(np.asarray(tracker.taken, dtype=np.int64))
        rest.run(lambda row, d: f"k-center over all eligible (uncertain pool exhausted): "
                                f"d={d:.4g}, u={values[row]:.4g}")


def _weighted_greedy(
    pool: CandidatePool, tracker: ConstraintTracker, values: np.ndarray, weight: float, device: str
) -> None:
    """Greedy on (1 - w) * normalised distance to covered frames + w * normalised uncertainty."""
    candidates = np.flatnonzero(tracker.eligible)
    traversal = ConstrainedFarthestFirst(pool, tracker, candidates, device, lazy=False)
    normalised = minmax(values[candidates])
    while not tracker.done:
        d2 = traversal.engine.values()
        open_ = d2 != -np.inf
        if not open_.any():
            break
        distance = np.sqrt(np.maximum(d2, 0.0), where=open_, out=np.zeros(d2.shape, dtype=np.float64))
        finite = open_ & np.isfinite(distance)
        d_max = distance[finite].max() if finite.any() else 0.0
        spread = np.where(np.isfinite(distance), distance / d_max if d_max > 0 else 0.0, 1.0)
        score = np.where(open_, (1.0 - weight) * spread + weight * normalised, -np.inf)
        local = int(np.argmax(score))
        row = int(candidates[local])
        d_text = "inf (nothing covered yet)" if not np.isfinite(distance[local]) else f"{distance[local]:.4g}"
        traversal.take(
            row, float(score[local]),
            f"uncertainty-weighted diversity: d={d_text}, u={values[row]:.4g}, score={score[local]:.4g}",
        )
