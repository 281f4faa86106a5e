"""Uncertainty reducers against hand-derived values, VOS signals, and the uncertainty strategy."""
from __future__ import annotations

import math

import numpy as np
import pytest

from segloop.selectors.constraints import Constraints
from segloop.selectors.types import CandidatePool, SelectorError
from segloop.selectors.uncertainty import (
    combine_signals,
    forward_backward_disagreement,
    frame_uncertainty,
    pixel_entropy,
    pixel_least_confidence,
    pixel_margin,
    propagation_uncertainty,
    reduce_pixels,
    uncertainty,
)


def probability_map(*pixels: tuple[float, ...]) -> np.ndarray:
    """(C, 1, P) probability map whose P pixels have the given class distributions."""
    return np.array(pixels, dtype=np.float32).T[:, None, :]


def test_two_class_pixels():
    """p = (.5, .5), (1, 0), (.8, .2): entropy 1, 0, H(.8); margin 1, 0, .4; least confidence 1, 0, .4."""
    probs = probability_map((0.5, 0.5), (1.0, 0.0), (0.8, 0.2))
    h = -(0.8 * math.log(0.8) + 0.2 * math.log(0.2)) / math.log(2)
    np.testing.assert_allclose(pixel_entropy(probs)[0], [1.0, 0.0, h], atol=1e-6)
    np.testing.assert_allclose(pixel_margin(probs)[0], [1.0, 0.0, 0.4], atol=1e-6)
    np.testing.assert_allclose(pixel_least_confidence(probs)[0], [1.0, 0.0, 0.4], atol=1e-6)


def test_three_class_pixel():
    """p = (.5, .3, .2): margin 1 - .2 = .8, least confidence .5 * 3/2 = .75, entropy H / log 3."""
    probs = probability_map((0.2, 0.5, 0.3))
    h = -(0.5 * math.log(0.5) + 0.3 * math.log(0.3) + 0.2 * math.log(0.2)) / math.log(3)
    assert pixel_margin(probs)[0, 0] == pytest.approx(0.8, abs=1e-6)
    assert pixel_least_confidence(probs)[0, 0] == pytest.approx(0.75, abs=1e-6)
    assert pixel_entropy(probs)[0, 0] == pytest.approx(h, abs=1e-6)


def test_reductions_mean_and_top_percent():
    """20 pixels, two of them 1 and the rest 0: mean .1, top 10 % mean 1, top 20 % mean .5."""
    maps = np.zeros((4, 5), dtype=np.float32)
    maps[0, 0] = maps[3, 4] = 1.0
    assert reduce_pixels(maps, "mean") == pytest.approx(0.1)
    assert reduce_pixels(maps, "top", top_percent=10) == pytest.approx(1.0)
    assert reduce_pixels(maps, "top", top_percent=20) == pytest.approx(0.5)
    batch = reduce_pixels(np.stack([maps, np.ones_like(maps)]), "mean")
    np.testing.assert_allclose(batch, [0.1, 1.0])


def test_frame_uncertainty_batches_frames():
    """(N, C, H, W) gives one value per frame, equal to the single-frame results."""
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((3, 4, 6, 5))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    values = frame_uncertainty(probs, "margin", "top", 10.0)
    assert values.shape == (3,)
    for index in range(3):
        assert values[index] == pytest.approx(frame_uncertainty(probs[index], "margin", "top", 10.0))
    confident = np.zeros((2, 4, 4), dtype=np.float32)
    confident[1] = 1.0
    assert frame_uncertainty(confident) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    "probs, message",
    [
        (np.full((2, 3, 3), 0.7, dtype=np.float32), "sum to 1"),
        (np.zeros((3, 3), dtype=np.float32), "shape"),
        (np.ones((1, 3, 3), dtype=np.float32), "at least 2 classes"),
        (np.ones((2, 3, 3), dtype=np.int64), "floats"),
    ],
)
def test_bad_probabilities_are_named(probs, message):
    """Non-probabilities and wrong shapes raise a SelectorError saying why."""
    with pytest.raises(SelectorError, match=message):
        pixel_entropy(probs)


def test_bad_measure_and_reduction_names():
    """Unknown measure or reduction names are listed in the error."""
    probs = probability_map((0.5, 0.5))
    with pytest.raises(SelectorError, match="measure"):
        frame_uncertainty(probs, measure="variance")
    with pytest.raises(SelectorError, match="reduction"):
        frame_uncertainty(probs, reduction="median")


def test_forward_backward_disagreement():
    """1 - mean IoU over objects; frames with no object in either direction score 0."""
    forward = np.zeros((3, 2, 2), dtype=np.uint8)
    backward = np.zeros((3, 2, 2), dtype=np.uint8)
    forward[0, 0, :] = 1          # object 1: 2 pixels forward,
    backward[0, 0, 0] = 1         # 1 pixel backward -> IoU 1/2
    forward[1, 0, 0] = 1
    backward[1, 0, 0] = 1         # object 1 identical -> IoU 1
    forward[1, 1, 1] = 2          # object 2 only forward -> IoU 0
    result = forward_backward_disagreement(forward, backward)
    np.testing.assert_allclose(result, [0.5, 0.5, 0.0])
    with pytest.raises(SelectorError, match="same shape|one shape"):
        forward_backward_disagreement(forward, backward[:2])


def test_propagation_uncertainty():
    """1 - confidence; confidences outside [0, 1] are refused."""
    np.testing.assert_allclose(propagation_uncertainty(np.array([1.0, 0.25, 0.0])), [0.0, 0.75, 1.0])
    with pytest.raises(SelectorError, match=r"\[0, 1\]"):
        propagation_uncertainty(np.array([1.5]))


def test_combine_signals_rank_normalises():
    """Signals on different scales count equally after rank normalisation."""
    combined = combine_signals(
        {"a": np.array([0.0, 100.0, 50.0]), "b": np.array([3.0, 1.0, 2.0])}, {"a": 1.0, "b": 1.0}
    )
    np.testing.assert_allclose(combined, [1.0, 1.0, 1.0])
    with pytest.raises(SelectorError, match="unknown signal 'c'"):
        combine_signals({"a": np.zeros(2)}, {"c": 1.0})


def test_strategy_picks_most_uncertain_under_constraints():
    """Highest signal first; the gap constraint skips frames next to a pick, leaving budget unspent."""
    values = np.array([0.1, 0.9, 0.8, 0.3, 0.7, 0.2])
    pool = CandidatePool(
        embeddings=np.zeros((6, 2), dtype=np.float32), frame_ids=np.arange(6) + 50,
        video_ids=np.zeros(6, dtype=np.int64),
        frame_indices=np.arange(6), uncertainty={"vos_fb_disagreement": values, "entropy_mean": 1 - values},
    )
    picks = uncertainty(pool, Constraints(budget=3, min_gap_frames=2), signal="vos_fb_disagreement")
    assert [p.frame_id for p in picks] == [51, 54]  # frames 0, 2, 3 and 5 are within 2 of a pick
    assert picks[0].score == pytest.approx(0.9) and "vos_fb_disagreement=0.9" in picks[0].reason
    with pytest.raises(SelectorError, match="name one of"):
        uncertainty(pool, Constraints(budget=1))
    with pytest.raises(SelectorError, match=r"^signal 'nope': no such uncertainty scores; available: "
                                            r"\['entropy_mean', 'vos_fb_disagreement'\]$"):
        uncertainty(pool, Constraints(budget=1), signal="nope")
    bare = CandidatePool(embeddings=pool.embeddings, frame_ids=pool.frame_ids, video_ids=pool.video_ids,
                         frame_indices=pool.frame_indices)
    with pytest.raises(SelectorError, match=r"^signal: no frame has uncertainty scores yet"):  # was "name one of
        uncertainty(bare, Constraints(budget=1))                                                # none (the pool..."
