"""Constraints every strategy obeys, and the tracker that keeps the set of still-pickable frames."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from segloop.selectors.types import NO_GROUP, CandidatePool, Pick, SelectorError


@dataclass(frozen=True)
class Constraints:
    """What a selection run may pick: budget, exclusions, spacing, caps and scope.

    `min_gap_frames` / `min_gap_seconds`: two picks of one video must be at least this far apart.
    `max_per_video`: at most this many picks per video. `videos`: only frames of these video ids.
    `time_range`: only frames whose timestamp (seconds) lies in [start, end]. Restricting to a
    project is the caller's job (build the pool from that project's frames only).
    """

    budget: int
    exclude_labeled: bool = True
    exclude_selected: bool = True
    one_per_duplicate_group: bool = True
    min_gap_frames: int = 0
    min_gap_seconds: float = 0.0
    max_per_video: int | None = None
    videos: tuple[int, ...] | None = None
    time_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        """Reject values that cannot describe a selection (the message names the field)."""
        if isinstance(self.budget, bool) or int(self.budget) != self.budget or self.budget < 0:
            raise SelectorError(f"budget: must be a non-negative integer, got {self.budget!r}")
        if not 0 <= self.min_gap_frames:
            raise SelectorError(f"min_gap_frames: must be >= 0, got {self.min_gap_frames}")
        if not 0 <= self.min_gap_seconds < math.inf:
            raise SelectorError(f"min_gap_seconds: must be a finite number >= 0, got {self.min_gap_seconds}")
        if self.max_per_video is not None and self.max_per_video < 1:
            raise SelectorError(f"max_per_video: must be >= 1, got {self.max_per_video}")
        if self.time_range is not None:
            start, end = self.time_range
            if not all(math.isfinite(t) for t in (start, end)):
                raise SelectorError(f"time_range: start and end must be finite seconds, got {start} and {end}")
            if not start <= end:
                raise SelectorError(f"time_range: start must be <= end, got {start} and {end}")
        if self.videos is not None:
            object.__setattr__(self, "videos", tuple(int(v) for v in self.videos))


def _members_by_key(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unique keys, start offsets, rows sorted by key) to list the rows sharing a key."""
    order = np.argsort(keys, kind="stable")
    unique, starts = np.unique(keys[order], return_index=True)
    return unique, np.append(starts, keys.size), order


class ConstraintTracker:
    """The frames still pickable under the constraints, updated as picks are taken.

    `in_scope` marks the frames inside the requested videos / time range (labeled ones included);
    `eligible` the frames that can be picked next. Taking a pick blocks its near-duplicate group,
    the frames of its video closer than the minimum gap, and the whole video once it hits its cap.
    """

    def __init__(self, pool: CandidatePool, constraints: Constraints) -> None:
        """Compute the initial scope and eligibility of every frame."""
        self.pool = pool
        self.constraints = constraints
        self.in_scope = self._scope_mask()
        self.eligible = self.in_scope.copy()
        self.taken: list[int] = []
        self.reasons: dict[int, tuple[float, str]] = {}
        self._video_counts: dict[int, int] = {}
        self._groups = _members_by_key(pool.duplicate_groups)
        self._videos = _members_by_key(pool.video_ids)
        self._video_time_order = self._sort_videos_by_time()
        blocked = np.zeros(pool.size, dtype=bool)
        if constraints.exclude_labeled:
            blocked |= pool.labeled
        if constraints.exclude_selected:
            blocked |= pool.selected
        self.eligible &= ~blocked
        if constraints.one_per_duplicate_group:
            taken_groups = np.unique(pool.duplicate_groups[blocked])
            for group in taken_groups[taken_groups != NO_GROUP]:
                self.eligible[self._rows_with(self._groups, group)] = False

    def _scope_mask(self) -> np.ndarray:
        """Frames inside the requested videos and time range."""
        pool, constraints = self.pool, self.constraints
        mask = np.ones(pool.size, dtype=bool)
        if constraints.videos is not None:
            mask &= np.isin(pool.video_ids, np.asarray(constraints.videos, dtype=np.int64))
        if constraints.time_range is not None:
            if pool.timestamps is None:
                raise SelectorError("time_range: the candidate pool has no timestamps")
            start, end = constraints.time_range
            mask &= (pool.timestamps >= start) & (pool.timestamps <= end)
        if constraints.min_gap_seconds > 0 and pool.timestamps is None:
            raise SelectorError("min_gap_seconds: the candidate pool has no timestamps")
        return mask

    def _sort_videos_by_time(self) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per video: rows sorted by frame index, their frame indices and their timestamps."""
        if self.constraints.min_gap_frames == 0 and self.constraints.min_gap_seconds == 0:
            return {}
        result = {}
        unique, bounds, order = self._videos
        for position, video in enumerate(unique):
            rows = order[bounds[position]:bounds[position + 1]]
            rows = rows[np.argsort(self.pool.frame_indices[rows], kind="stable")]
            stamps = self.pool.timestamps[rows] if self.pool.timestamps is not None else None
            result[int(video)] = (rows, self.pool.frame_indices[rows], stamps)
        return result

    @staticmethod
    def _rows_with(members: tuple[np.ndarray, np.ndarray, np.ndarray], key: int) -> np.ndarray:
        """Rows whose key equals `key`."""
        unique, bounds, order = members
        position = int(np.searchsorted(unique, key))
        if position >= unique.size or unique[position] != key:
            return order[:0]
        return order[bounds[position]:bounds[position + 1]]

    @property
    def remaining(self) -> int:
        """How many more picks the budget allows."""
        return self.constraints.budget - len(self.taken)

    @property
    def done(self) -> bool:
        """True once the budget is spent or nothing is pickable any more."""
        return self.remaining <= 0 or not self.eligible.any()

    def take(self, row: int) -> np.ndarray:
        """Record a pick and return the rows that became ineligible because of it (row included)."""
        row = int(row)
        if not self.eligible[row]:
            raise SelectorError(f"frame id {int(self.pool.frame_ids[row])} is not eligible for picking")
        if self.remaining <= 0:
            raise SelectorError("selection budget is already spent")
        self.taken.append(row)
        blocked = [np.array([row])]
        pool, constraints = self.pool, self.constraints
        group = int(pool.duplicate_groups[row])
        if constraints.one_per_duplicate_group and group != NO_GROUP:
            blocked.append(self._rows_with(self._groups, group))
        video = int(pool.video_ids[row])
        blocked.extend(self._too_close(row, video))
        self._video_counts[video] = self._video_counts.get(video, 0) + 1
        if constraints.max_per_video is not None and self._video_counts[video] >= constraints.max_per_video:
            blocked.append(self._rows_with(self._videos, video))
        rows = np.unique(np.concatenate(blocked))
        rows = rows[self.eligible[rows]]
        self.eligible[rows] = False
        return rows

    def _too_close(self, row: int, video: int) -> list[np.ndarray]:
        """Rows of `video` within the minimum frame or time gap of `row`."""
        if not self._video_time_order:
            return []
        rows, indices, stamps = self._video_time_order[video]
        found = []
        gap = self.constraints.min_gap_frames
        if gap > 0:
            here = self.pool.frame_indices[row]
            lo = np.searchsorted(indices, here - gap, side="right")
            hi = np.searchsorted(indices, here + gap, side="left")
            found.append(rows[lo:hi])
        seconds = self.constraints.min_gap_seconds
        if seconds > 0 and stamps is not None:
            here_t = self.pool.timestamps[row]
            close = np.abs(stamps - here_t) < seconds
            found.append(rows[close])
        return found

    def take_in_order(
        self, rows: Iterable[int], scores: np.ndarray, reason: Callable[[int], str]
    ) -> list[Pick]:
        """Walk rows best-first, taking each that is still eligible, until the budget is spent."""
        for row in rows:
            if self.done:
                break
            if self.eligible[row]:
                self.record(row, float(scores[row]), reason(int(row)))
        return self.picks()

    def record(self, row: int, score: float, reason: str) -> None:
        """Take `row` and remember its score and reason."""
        self.take(row)
        self.reasons[int(row)] = (float(score), reason)

    def picks(self) -> list[Pick]:
        """The picks taken so far, ranked in pick order."""
        result = []
        for rank, row in enumerate(self.taken, start=1):
            score, reason = self.reasons.get(row, (float("nan"), ""))
            result.append(Pick(int(self.pool.frame_ids[row]), rank, score, reason, int(row)))
        return result
