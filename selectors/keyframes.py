"""Keyframes for one video: the K frames whose masks should propagate best to the whole video.

Propagation error grows with how far a frame is from its nearest keyframe along the video, so frames are placed on a
one-dimensional path: each step between consecutive frames is as long as the mix of appearance change (the step
between their embeddings) and elapsed time (`time_weight` of time per unit of appearance, each normalised to a total
of 1), stretched by (1 + confidence_weight * u) where the propagation is unsure (u: the min-max normalised
uncertainty). Keyframes then cover that path evenly: the budget is split between the gaps left by the video's
labeled frames (an interior gap with m new keyframes leaves at most g / 2(m + 1) to the nearest one, a gap at either
end g / (2m + 1)), always to the gap that is worst covered, and each gap's keyframes are spaced evenly along the
path. Unlike a k-center over (appearance, time) points, this never spends a keyframe on the first or last frame just
because it is far from the rest, and a stretch that changes a lot gets keyframes in proportion. Measured against
`uniform` (i·T/K) on the DAVIS sample with a 10-minute encoder (`bench keyframes`, K = 2 / 3), the gain comes from
the placement: a plain even cover in time does as well as this path, within -0.007..+0.008 J&F, and so do paths
built from the propagator's own difficulty (windowed match strength; the label-free round trip of every cell to a
frame 1 or 4 steps on and back), while that round trip less each frame's trip to itself, which marks fast stretches
more sharply, lost up to 0.036 at K = 2 (keyframes drawn into the hard middle leave the ends uncovered); ends
covered more tightly than interior gaps (one-sided propagation weighted 1.5-3x) lost 0.007-0.018 at K = 2
(-0.011..+0.003 at K = 3), and more loosely (weighted 0.5-0.8x: keyframes drawn inward) lost as well, by 0.002-0.046
at K = 2 and -0.021..+0.002 at K = 3 over four encoder seeds; moving each keyframe up to T/12 or T/24 frames onto
the frame with the largest excess round trip (annotating the hardest frame near each target) lost 0.004-0.020 at K =
2 (-0.010..+0.004 at K = 3): a hard stretch gains more from keyframes on both sides than from one inside it. Moving
them the other way, onto the frame with the smallest round trip (raw or excess; annotating the clearest frame near
each target), lost as well: 0.821-0.826 J&F against 0.834 at K = 3, -0.016..+0.001 at K = 2 (seed 0). Placing them
one at a time as an annotator would, each pick's mask revealed and propagated before the next, with the path
stretched by the propagation's uncertainty (1 - mean max-probability over the frame or the object, the
`vos_uncertainty` the platform stores) moved the K = 3 gain by -0.007..+0.005 over four encoder seeds
(-0.004..+0.003 at K = 2), and a path of the object's motion (1 - IoU of consecutive propagated masks, mixed with
time 0-2x) by -0.015..+0.005 (-0.009..-0.001 at K = 2): with a mask in hand the even cover still holds. Rehearsing
placements without labels (propagating each frame's own k-means colour clusters, 12 of them, from the even cover and
from 32 seeded random placements, and keeping the one whose propagation reconstructs the clusters best) gained
+0.029 / +0.028 / +0.032 / +0.016 at K = 3 on seeds 0-3 against the even cover's +0.026 / +0.019 / +0.036 / +0.015,
for 33 propagations of the video: the proxy's rank correlation with the true J&F over those placements was only
0.07-0.83 per sequence. Facility location on patch coverage (the K frames whose dense features best cover every
frame's, each of a frame's patches matched to its most similar keyframe patch, searched exhaustively) gained +0.032
/ +0.015 / +0.021 / +0.005 at K = 3 on seeds 0-3, and with the coverage damped by a Gaussian of the time gap (sigma
T/4, T/2) +0.030 / +0.025 / +0.028 / +0.018 and +0.028 / +0.020 / +0.028 / +0.014, and at K = 2 +0.047..+0.070 over
the twelve runs against the even cover's +0.056..+0.063. How much room is left at K = 3 (10-minute encoder, seed 0):
the best placement on a grid of about T/13 frames, found with the ground truth, reaches 0.855 J&F against this
selector's 0.834 and uniform's 0.809, with picks no rule above produces (blackswan [9, 41, 45], dog [1, 36, 56],
motocross-jump [7, 16, 28]); and moving every keyframe by up to 2 frames either way leaves the mean gain over
uniform at +0.025 / +0.019 / +0.025 / +0.018 on seeds 0-3 (unmoved: +0.026 / +0.019 / +0.036 / +0.015), nearly all
of it on the two sequences with fast motion.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from segloop.selectors.constraints import Constraints, ConstraintTracker
from segloop.selectors.diversity import seed_rows
from segloop.selectors.hybrid import minmax
from segloop.selectors.registry import Rule, register
from segloop.selectors.types import CandidatePool, Pick, SelectorError


def _video_of(pool: CandidatePool, tracker: ConstraintTracker, video_id: int | None) -> int | None:
    """The one video the keyframes are for; None when the scope is empty (SelectorError when ambiguous)."""
    in_scope = np.unique(pool.video_ids[tracker.in_scope])
    if video_id is not None:
        if video_id not in pool.video_ids:
            raise SelectorError(f"keyframes: video {video_id} is not among the videos selected from (ids "
                                f"{', '.join(str(v) for v in np.unique(pool.video_ids)[:10])})")
        return int(video_id)
    if in_scope.size == 0:
        return None
    if in_scope.size != 1:
        raise SelectorError(
            f"keyframes: places keyframes on one video, and the selection covers {in_scope.size} videos (ids "
            f"{', '.join(str(v) for v in in_scope[:10])}{', ...' if in_scope.size > 10 else ''}): give the strategy a "
            "video_id parameter, or limit the selection to one video"
        )
    return int(in_scope[0])


def _uncertainty(pool: CandidatePool, signal: str | None, weight: float) -> np.ndarray | None:
    """The uncertainty signal to favour: the named one, the pool's only one, or none (always none at weight 0)."""
    if weight == 0:
        return None
    if signal is not None or len(pool.uncertainty) == 1:
        return pool.signal(signal)
    if pool.uncertainty:
        raise SelectorError(f"keyframes: name the signal to use, one of {sorted(pool.uncertainty)} (or set "
                            "confidence_weight=0 to ignore uncertainty)")
    return None


def path_positions(embeddings: np.ndarray, times: np.ndarray, time_weight: float,
                   stretch: np.ndarray | None = None) -> np.ndarray:
    """Each frame's position along the video path (frames in time order; 0 at the first frame)."""
    count = len(times)
    if count < 2:
        return np.zeros(count)
    appearance = np.linalg.norm(np.diff(np.asarray(embeddings, dtype=np.float64), axis=0), axis=1)
    elapsed = np.diff(np.asarray(times, dtype=np.float64))
    parts = [(steps / steps.sum(), weight) for steps, weight in ((appearance, 1.0), (elapsed, time_weight))
             if weight > 0 and steps.sum() > 0]
    if not parts:
        parts = [(np.full(count - 1, 1.0 / (count - 1)), 1.0)]
    steps = sum(weight * part for part, weight in parts) / sum(weight for _, weight in parts)
    if stretch is not None:
        steps = steps * (1.0 + 0.5 * (stretch[:-1] + stretch[1:]))
    return np.concatenate([[0.0], np.cumsum(steps)])


@dataclass
class _Gap:
    """A stretch of the path between cover points (or a video end) and the keyframes allotted to it."""

    start: float
    stop: float
    open_start: bool  # no keyframe at the start: the video's first frame
    open_stop: bool  # no keyframe at the stop: the video's last frame
    count: int = 0

    def worst(self, count: int | None = None) -> float:
        """Largest path distance from a point of the gap to its nearest keyframe with `count` new ones."""
        count = self.count if count is None else count
        length, ends = self.stop - self.start, int(self.open_start) + int(self.open_stop)
        if ends == 2:
            return math.inf if count == 0 else length / (2 * count)
        return length / (2 * count + 1) if ends == 1 else length / (2 * (count + 1))

    def uncovered(self) -> float:
        """The gap's worst distance to a keyframe before it got any (its length when no keyframe bounds it): the
        score of its picks, always finite."""
        worst = self.worst(0)
        return worst if math.isfinite(worst) else self.stop - self.start

    def targets(self) -> list[float]:
        """Evenly spaced path positions of the gap's new keyframes."""
        length, m = self.stop - self.start, self.count
        if self.open_start and self.open_stop:
            return [self.start + (2 * j - 1) * length / (2 * m) for j in range(1, m + 1)]
        if self.open_start:  # the video's first frame is uncovered: the first new keyframe half a step in
            return [self.start + (2 * j - 1) * length / (2 * m + 1) for j in range(1, m + 1)]
        if self.open_stop:
            return [self.stop - (2 * j - 1) * length / (2 * m + 1) for j in range(m, 0, -1)]
        return [self.start + j * length / (m + 1) for j in range(1, m + 1)]


def _gaps(positions: np.ndarray, cover: np.ndarray) -> list[_Gap]:
    """The gaps the cover points (positions of labeled frames) leave on the path."""
    first, last = float(positions[0]), float(positions[-1])
    points = sorted({float(p) for p in cover})
    if not points:
        return [_Gap(first, last, True, True)]
    gaps = [_Gap(first, points[0], True, False)] if points[0] > first else []
    gaps += [_Gap(a, b, False, False) for a, b in zip(points, points[1:]) if b > a]
    if points[-1] < last:
        gaps.append(_Gap(points[-1], last, False, True))
    return gaps


def allot(gaps: list[_Gap], budget: int) -> None:
    """Give `budget` keyframes one by one to the gap whose worst-covered point is farthest from a keyframe."""
    for _ in range(budget):
        if not gaps:
            return
        max(gaps, key=lambda gap: (gap.worst(), gap.stop - gap.start)).count += 1


def _nearest_open(positions: np.ndarray, eligible: np.ndarray, target: float) -> int | None:
    """The eligible frame nearest `target` on the path; the middle one among equally near frames."""
    candidates = np.flatnonzero(eligible)
    if candidates.size == 0:
        return None
    distance = np.abs(positions[candidates] - target)
    tied = candidates[distance <= distance.min() + 1e-12]
    return int(tied[len(tied) // 2])


@register("keyframes", time_weight=Rule(low=0.0), confidence_weight=Rule(low=0.0))
def keyframes(
    pool: CandidatePool, constraints: Constraints, *, video_id: int | None = None, time_weight: float = 1.0,
    confidence_weight: float = 1.0, signal: str | None = None,
) -> list[Pick]:
    """Keyframes of one video: an even cover of its path of appearance change and time, denser where unsure.

    `video_id` may be omitted when the scope holds one video. `signal` names the uncertainty to
    favour (default: the pool's only signal, if any); confidence_weight 0 ignores it.
    """
    tracker = ConstraintTracker(pool, constraints)
    video = _video_of(pool, tracker, video_id)
    if video is None:
        return []
    rows = np.flatnonzero(pool.video_ids == video)
    tracker.eligible[pool.video_ids != video] = False
    if tracker.done:
        return []
    order = np.argsort(pool.time_key()[rows], kind="stable")
    rows = rows[order]
    signal_values = _uncertainty(pool, signal, confidence_weight)
    stretch = None if signal_values is None else confidence_weight * minmax(signal_values[rows])
    positions = path_positions(pool.embeddings[rows], pool.time_key()[rows], time_weight, stretch)
    local = np.full(pool.size, -1, dtype=np.int64)
    local[rows] = np.arange(rows.size)
    seeds = local[seed_rows(pool, constraints)]
    gaps = _gaps(positions, positions[seeds[seeds >= 0]])
    allot(gaps, tracker.remaining)
    length = float(positions[-1])
    for gap in sorted(gaps, key=lambda g: -g.worst(0)):
        for target in gap.targets():
            if tracker.done:
                return tracker.picks()
            position = _nearest_open(positions, tracker.eligible[rows], target)
            if position is None:
                return tracker.picks()
            tracker.record(int(rows[position]), gap.uncovered(),
                           f"keyframe at {positions[position]:.3g} of the video path (length {length:.3g}); "
                           f"leaves at most {gap.worst():.3g} to the nearest keyframe")
    return tracker.picks()
