"""Baselines: seeded random frames, and frames evenly spaced in time within each video."""
from __future__ import annotations

import numpy as np

from segloop.selectors.constraints import Constraints, ConstraintTracker
from segloop.selectors.registry import MAX_SEED, Rule, register
from segloop.selectors.types import CandidatePool, Pick


@register("random", seed=Rule(low=0, high=MAX_SEED))
def random_frames(pool: CandidatePool, constraints: Constraints, *, seed: int = 0) -> list[Pick]:
    """Baseline: eligible frames in a seeded random order (same seed, same pool -> same picks)."""
    tracker = ConstraintTracker(pool, constraints)
    rng = np.random.default_rng(seed)
    draws = rng.random(pool.size)
    candidates = np.flatnonzero(tracker.eligible)
    order = candidates[np.argsort(draws[candidates], kind="stable")]
    return tracker.take_in_order(order, draws, lambda row: f"random order (seed {seed})")


def allocate_proportionally(sizes: np.ndarray, total: int, caps: np.ndarray | None = None) -> np.ndarray:
    """Split `total` into integer shares proportional to `sizes` (largest remainder, within caps)."""
    sizes = np.asarray(sizes, dtype=np.float64)
    caps = np.asarray(sizes if caps is None else caps, dtype=np.int64)
    shares = np.zeros(sizes.size, dtype=np.int64)
    remaining = min(int(total), int(caps.sum()))
    while remaining > 0:
        open_ = shares < caps
        weights = np.where(open_, sizes, 0.0)
        if weights.sum() <= 0:
            weights = open_.astype(np.float64)
        exact = weights / weights.sum() * remaining
        step = np.minimum(np.floor(exact).astype(np.int64), caps - shares)
        leftover = remaining - int(step.sum())
        if leftover > 0:
            fraction = np.where(open_ & (shares + step < caps), exact - np.floor(exact), -1.0)
            for index in np.argsort(-fraction, kind="stable")[:leftover]:
                if fraction[index] >= 0:
                    step[index] += 1
        if step.sum() == 0:
            break
        shares += step
        remaining -= int(step.sum())
    return shares


def _video_rows(pool: CandidatePool, scope: np.ndarray) -> dict[int, np.ndarray]:
    """In-scope rows of each video, sorted by time."""
    rows = np.flatnonzero(scope)
    rows = rows[np.lexsort((pool.frame_indices[rows], pool.time_key()[rows], pool.video_ids[rows]))]
    videos, starts = np.unique(pool.video_ids[rows], return_index=True)
    return {int(v): part for v, part in zip(videos, np.split(rows, starts[1:]))}


def nearest_gap(values: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Distance from each value to its nearest anchor (inf when there are no anchors)."""
    if anchors.size == 0:
        return np.full(values.shape, np.inf)
    anchors = np.sort(anchors)
    position = np.searchsorted(anchors, values)
    left = anchors[np.maximum(position - 1, 0)]
    right = anchors[np.minimum(position, anchors.size - 1)]
    return np.minimum(np.abs(values - left), np.abs(values - right))


@register("uniform")
def uniform(pool: CandidatePool, constraints: Constraints) -> list[Pick]:
    """Baseline: frames evenly spaced in time within each video, budget split by video length.

    Video v gets a share of the budget proportional to its number of in-scope frames; its picks
    are the eligible frames nearest to the centres of equal time slices. Budget left over because
    of constraints is filled with the eligible frames farthest in time from earlier picks.
    """
    tracker = ConstraintTracker(pool, constraints)
    if tracker.done:
        return []
    time_key = pool.time_key()
    videos = _video_rows(pool, tracker.in_scope)
    ids = list(videos)
    eligible_counts = np.array([tracker.eligible[videos[v]].sum() for v in ids])
    caps = (eligible_counts if constraints.max_per_video is None
            else np.minimum(eligible_counts, constraints.max_per_video))
    shares = allocate_proportionally(np.array([videos[v].size for v in ids]), constraints.budget, caps)
    for video, share in zip(ids, shares):
        _take_evenly_spaced(tracker, videos[video], int(share), time_key, video)
    _fill_farthest_in_time(tracker, videos, time_key)
    return tracker.picks()


def _take_evenly_spaced(
    tracker: ConstraintTracker, rows: np.ndarray, share: int, time_key: np.ndarray, video: int
) -> None:
    """Take up to `share` eligible rows nearest to the centres of `share` equal time slices."""
    if share <= 0 or rows.size == 0:
        return
    start, end = float(time_key[rows[0]]), float(time_key[rows[-1]])
    for slot in range(share):
        if tracker.done:
            return
        target = start + (slot + 0.5) / share * (end - start)
        candidates = rows[tracker.eligible[rows]]
        if candidates.size == 0:
            return
        best = candidates[np.argmin(np.abs(time_key[candidates] - target))]
        tracker.record(
            int(best), float(time_key[best]),
            f"evenly spaced: slot {slot + 1}/{share} of video {video} "
            f"(target t={target:.4g}, at t={time_key[best]:.4g})",
        )


def _fill_farthest_in_time(tracker: ConstraintTracker, videos: dict[int, np.ndarray], time_key: np.ndarray) -> None:
    """Spend leftover budget on eligible frames farthest in time from their video's picks."""
    while not tracker.done:
        best_row, best_gap = -1, -1.0
        taken = np.asarray(tracker.taken, dtype=np.int64)
        for video, rows in videos.items():
            candidates = rows[tracker.eligible[rows]]
            if candidates.size == 0:
                continue
            picked = taken[tracker.pool.video_ids[taken] == video]
            gaps = nearest_gap(time_key[candidates], time_key[picked])
            index = int(np.argmax(gaps))
            if gaps[index] > best_gap:
                best_row, best_gap = int(candidates[index]), float(gaps[index])
        if best_row < 0:
            return
        tracker.record(best_row, float(time_key[best_row]),
                       f"fill: farthest in time from earlier picks (gap {best_gap:.4g})")
