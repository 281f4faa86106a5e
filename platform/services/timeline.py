"""The editor's timeline of one video: which frames hold human keyframes, which hold propagation drafts, and
how much each draft's forward and backward propagation disagree (the draft's confidence)."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from segloop.platform.db.engine import session_scope
from segloop.platform.db.stores import annotations as annotation_store
from segloop.platform.db.stores import footage, scores
from segloop.platform.db.stores.annotations import HUMAN_SOURCES
from segloop.platform.services.propagation import DISAGREEMENT_SIGNAL

HUMAN_DRAFT, HUMAN_DONE, DRAFT, EMPTY = "h", "s", "d", "."


@dataclass(frozen=True)
class Timeline:
    """Per frame of a video (in index order): its kind (h/s human draft/done, d propagated draft, . nothing),
    its frame id, and for drafts the stored forward/backward disagreement (None when unknown)."""

    video_id: int
    frame_ids: tuple[int, ...]
    kinds: str
    disagreement: tuple[float | None, ...]

    def is_human(self, index: int) -> bool:
        """Whether frame `index` holds a human mask."""
        return self.kinds[index] in (HUMAN_DRAFT, HUMAN_DONE)

    def worst_draft(self) -> int | None:
        """The index of the draft whose passes disagree most (None without scored drafts)."""
        scored = [(value, index) for index, value in enumerate(self.disagreement)
                  if self.kinds[index] == DRAFT and value is not None]
        return max(scored, key=lambda item: (item[0], -item[1]))[1] if scored else None

    def affected_span(self, index: int) -> tuple[int, int] | None:
        """(lo, hi) frames to re-propagate after frame `index` became a human keyframe: the runs of drafts on each
        side, extended to the human keyframe that bounds each run; None when no draft touches it."""
        lo = index
        while lo - 1 >= 0 and self.kinds[lo - 1] == DRAFT:
            lo -= 1
        hi = index
        while hi + 1 < len(self.kinds) and self.kinds[hi + 1] == DRAFT:
            hi += 1
        if lo == index and hi == index:
            return None
        if lo - 1 >= 0 and self.is_human(lo - 1):
            lo -= 1
        if hi + 1 < len(self.kinds) and self.is_human(hi + 1):
            hi += 1
        return lo, hi


def video_timeline(engine: Engine, video_id: int) -> Timeline:
    """The timeline of a video from its newest annotations and stored disagreement scores."""
    with session_scope(engine) as session:
        frames = footage.list_frames(session, video_id)
        latest = annotation_store.latest_annotations_for_video(session, video_id)
        frame_ids = [f.id for f in frames]
        stored = scores.latest_scores_of_frames(session, frame_ids, DISAGREEMENT_SIGNAL)
    by_frame: dict[int, list] = {}
    for annotation in latest:
        by_frame.setdefault(annotation.frame_id, []).append(annotation)
    kinds = []
    for frame_id in frame_ids:
        items = by_frame.get(frame_id, [])
        human = [a for a in items if a.source in HUMAN_SOURCES]
        if human:
            kinds.append(HUMAN_DONE if all(a.status != "draft" for a in human) else HUMAN_DRAFT)
        else:
            kinds.append(DRAFT if items else EMPTY)
    disagreement = tuple(stored.get(f) if k == DRAFT else None for f, k in zip(frame_ids, kinds))
    return Timeline(video_id, tuple(frame_ids), "".join(kinds), disagreement)
