"""Keyframes for one video: the K frames whose masks should propagate best to the whole video.

Frames live in a joint space: embedding / (RMS spread of the video's embeddings) plus one time
coordinate, time_weight * (t - t_start) / duration. A greedy k-center in that space covers both
appearance and time; each step's distance is multiplied by (1 + confidence_weight * u), u being
the frame's min-max normalised uncertainty (low propagation confidence), so low-confidence
stretches get keyframes sooner. Labeled frames of the video seed the cover; without any, the first
keyframe is the frame nearest the video's mean in the joint space (the best single frame to
propagate from in the least-squares sense).
"""
from __future__ import annotations

import math

import numpy as np

from segloop.selectors.constraints import Constraints, ConstraintTracker
from segloop.selectors.diversity import FarthestFirst, seed_rows
from segloop.selectors.hybrid import minmax
from segloop.selectors.registry import register
from segloop.selectors.types import CandidatePool, Pick, SelectorError


def joint_space(embeddings: np.ndarray, times: np.ndarray, time_weight: float) -> np.ndarray:
    """Embeddings scaled to unit RMS spread, with a time coordinate scaled to [0, time_weight] appended."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    centred = embeddings - embeddings.mean(axis=0)
    spread = math.sqrt(float((centred * centred).sum(axis=1).mean())) if len(embeddings) else 0.0
    scaled = embeddings / spread if spread > 0 else np.zeros_like(embeddings)
    duration = float(times.max() - times.min()) if times.size else 0.0
    position = (times - times.min()) / duration if duration > 0 else np.zeros(times.shape)
    return np.hstack([scaled, time_weight * position[:, None]]).astype(np.float32)


def _video_of(pool: CandidatePool, tracker: ConstraintTracker, video_id: int | None) -> int | None:
    """The one video the keyframes are for; None when the scope is empty (SelectorError when ambiguous)."""
    in_scope = np.unique(pool.video_ids[tracker.in_scope])
    if video_id is not None:
        if video_id not in pool.video_ids:
            raise SelectorError(f"keyframes: video {video_id} is not in the candidate pool")
        return int(video_id)
    if in_scope.size == 0:
        return None
    if in_scope.size != 1:
        raise SelectorError(
            f"keyframes: works on one video; the scope holds {in_scope.size} videos "
            f"({in_scope[:10].tolist()}); pass video_id or constraints.videos"
        )
    return int(in_scope[0])


def _uncertainty(pool: CandidatePool, signal: str | None) -> np.ndarray | None:
    """The uncertainty signal to favour: the named one, the pool's only one, or none."""
    if signal is not None or len(pool.uncertainty) == 1:
        return pool.signal(signal)
    if pool.uncertainty:
        raise SelectorError(f"keyframes: name the signal to use, one of {sorted(pool.uncertainty)}")
    return None


@register("keyframes")
def keyframes(
    pool: CandidatePool, constraints: Constraints, *, video_id: int | None = None, time_weight: float = 1.0,
    confidence_weight: float = 1.0, signal: str | None = None,
) -> list[Pick]:
    """Keyframes of one video: k-center over appearance and time, favouring low-confidence stretches.

    `video_id` may be omitted when the scope holds one video. `signal` names the uncertainty to
    favour (default: the pool's only signal, if any); confidence_weight 0 ignores it.
    """
    if time_weight < 0 or confidence_weight < 0:
        raise SelectorError("keyframes: time_weight and confidence_weight must be >= 0")
    tracker = ConstraintTracker(pool, constraints)
    video = _video_of(pool, tracker, video_id)
    if video is None:
        return []
    rows = np.flatnonzero(tracker.in_scope & (pool.video_ids == video))
    tracker.eligible[pool.video_ids != video] = False
    if tracker.done:
        return []
    times = pool.time_key()[rows]
    rows, times = rows[np.argsort(times, kind="stable")], np.sort(times, kind="stable")
    signal_values = _uncertainty(pool, signal)
    boost = np.zeros(rows.size) if signal_values is None else confidence_weight * minmax(signal_values[rows])
    space = joint_space(pool.embeddings[rows], times, time_weight)
    engine = FarthestFirst(space, device="numpy")
    local = np.full(pool.size, -1, dtype=np.int64)
    local[rows] = np.arange(rows.size)
    seeds = local[seed_rows(pool, constraints)]
    seeds = seeds[seeds >= 0]
    for seed in seeds:
        engine.add_row(int(seed))
    engine.block(np.flatnonzero(~tracker.eligible[rows]))
    duration = float(times[-1] - times[0])

    def take(position: int, score: float, why: str) -> None:
        """Record a keyframe and update the cover."""
        blocked = local[tracker.take(int(rows[position]))]
        tracker.reasons[int(rows[position])] = (score, f"{why}, t={times[position]:.4g} of {duration:.4g}")
        engine.add_row(position)
        engine.block(blocked[blocked >= 0])

    if seeds.size == 0:
        central = engine.distances_to_mean()
        central[~tracker.eligible[rows]] = np.inf
        first = int(np.argmin(central))
        take(first, -math.sqrt(float(central[first])), "first keyframe: most central frame of the video")
    while not tracker.done:
        d2 = engine.values()
        open_ = d2 != -np.inf
        if not open_.any():
            break
        score = np.where(open_, np.sqrt(np.maximum(d2, 0.0)) * (1.0 + boost), -np.inf)
        position = int(np.argmax(score))
        take(
            position, float(score[position]),
            f"keyframe: farthest from the cover in appearance+time, d={math.sqrt(max(float(d2[position]), 0.0)):.4g}"
            + (f", uncertainty boost x{1.0 + boost[position]:.3g}" if signal_values is not None else ""),
        )
    return tracker.picks()
