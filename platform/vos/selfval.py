"""Which propagator to trust on this footage: leave-one-keyframe-out J&F on the human masks.

Each human keyframe k in turn is hidden; the others propagate into the stretch of video between k's
neighbouring keyframes (or to the video's end), and the mask predicted at k is scored against the
human mask (J and F per object, DAVIS measures). A propagator's score is the mean over keyframes.
No other tool tells an annotator which model to trust on their own footage; this needs no ground
truth beyond the labels the annotator already gave.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from segloop.platform.evaluation.metrics import object_ids_of, score_frame
from segloop.platform.vos.propagation import PropagationConfig, PropagationError, propagate


class _Window(Sequence):
    """Frames start..stop-1 of a frame sequence, indexed from 0."""

    def __init__(self, frames: Sequence[np.ndarray], start: int, stop: int) -> None:
        self.frames, self.start, self.stop = frames, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.frames[self.start + index]


def held_out_prediction(frames: Sequence[np.ndarray], human: Mapping[int, np.ndarray], hidden: int, featurizer,
                        config: PropagationConfig) -> np.ndarray:
    """The mask propagated to keyframe `hidden` from its nearest other keyframes (at most one each side)."""
    others = sorted(k for k in human if k != hidden)
    if not others:
        raise PropagationError("leave-one-out needs at least 2 human-labelled frames")
    before = [k for k in others if k < hidden]
    after = [k for k in others if k > hidden]
    start = before[-1] if before else hidden
    stop = (after[0] + 1) if after else hidden + 1
    window = _Window(frames, start, stop)
    keyframes = {k - start: human[k] for k in (before[-1:] + after[:1])}
    return propagate(window, keyframes, featurizer, config).masks[hidden - start]


def leave_one_out_jf(frames: Sequence[np.ndarray], human: Mapping[int, np.ndarray], featurizer,
                     config: PropagationConfig) -> float:
    """Mean J&F over the human keyframes, each predicted from the others."""
    values = []
    for hidden in sorted(human):
        objects = sorted(object_ids_of(human[hidden]))
        if not objects:
            continue
        j, f = score_frame(held_out_prediction(frames, human, hidden, featurizer, config), human[hidden], objects)
        values.append(float((j.mean() + f.mean()) / 2))
    if not values:
        raise PropagationError("leave-one-out: no human keyframe has an object to score")
    return float(np.mean(values))


def rank_propagators(frames: Sequence[np.ndarray], human: Mapping[int, np.ndarray], featurizers: Mapping[str, object],
                     config: PropagationConfig) -> dict[str, float]:
    """{propagator name: leave-one-out J&F}, best first."""
    scores = {name: leave_one_out_jf(frames, human, featurizer, config) for name, featurizer in featurizers.items()}
    return dict(sorted(scores.items(), key=lambda item: -item[1]))
