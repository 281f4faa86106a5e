"""Behaviour of each strategy on hand-built pools whose right answer can be worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from segloop.selectors.baselines import allocate_proportionally, random_frames, uniform
from segloop.selectors.clustering import cluster, cluster_shares, kmeans
from segloop.selectors.constraints import Constraints
from segloop.selectors.diversity import kcenter
from segloop.selectors.hybrid import hybrid
from segloop.selectors.keyframes import keyframes
from segloop.selectors.types import CandidatePool, SelectorError
from segloop.selectors.typicality import knn_typicality, typicality


def make_pool(embeddings: np.ndarray, video_ids=None, labeled=None, uncertainty=None,
              fps: float = 1.0) -> CandidatePool:
    """Pool over the given embeddings; one video by default, frame i at t = i / fps within its video."""
    size = len(embeddings)
    video_ids = np.zeros(size, dtype=np.int64) if video_ids is None else np.asarray(video_ids)
    frame_indices = np.zeros(size, dtype=np.int64)
    for video in np.unique(video_ids):
        frame_indices[video_ids == video] = np.arange((video_ids == video).sum())
    return CandidatePool(
        embeddings=np.asarray(embeddings, dtype=np.float32), frame_ids=np.arange(size) + 1000,
        video_ids=video_ids, frame_indices=frame_indices, timestamps=frame_indices / fps,
        labeled=labeled, uncertainty=uncertainty or {},
    )


def blobs(sizes: list[int], seed: int = 0, spread: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Well separated Gaussian blobs in 4-D: (points, blob of each point)."""
    rng = np.random.default_rng(seed)
    centres = np.eye(4)[: len(sizes)] * 10.0
    labels = np.repeat(np.arange(len(sizes)), sizes)
    return (centres[labels] + spread * rng.standard_normal((labels.size, 4))).astype(np.float32), labels


def test_allocate_proportionally():
    """Largest remainder, caps respected and their slack handed on."""
    assert allocate_proportionally(np.array([3, 1]), 4).tolist() == [3, 1]
    assert allocate_proportionally(np.array([1, 1, 1]), 2).tolist() == [1, 1, 0]
    assert allocate_proportionally(np.array([10, 1]), 5, caps=np.array([2, 5])).tolist() == [2, 3]
    assert allocate_proportionally(np.array([1, 1]), 10).tolist() == [1, 1]


def test_uniform_hand_checked_positions():
    """100 frames at 1 fps, budget 4: slot centres 12.4, 37.1, 61.9, 86.6 -> frames 12, 37, 62, 87."""
    pool = make_pool(np.zeros((100, 2)))
    picks = uniform(pool, Constraints(budget=4))
    assert [p.frame_id - 1000 for p in picks] == [12, 37, 62, 87]


def test_uniform_splits_budget_by_video_length():
    """Videos of 100 and 50 frames share a budget of 3 as 2 and 1."""
    pool = make_pool(np.zeros((150, 2)), video_ids=np.repeat([0, 1], [100, 50]))
    picks = uniform(pool, Constraints(budget=3))
    assert sorted(int(pool.video_ids[p.row]) for p in picks) == [0, 0, 1]


def test_random_is_seeded():
    """Same seed, same picks; another seed, other picks."""
    pool = make_pool(np.zeros((200, 2)))
    first = [p.frame_id for p in random_frames(pool, Constraints(budget=10), seed=3)]
    assert first == [p.frame_id for p in random_frames(pool, Constraints(budget=10), seed=3)]
    assert first != [p.frame_id for p in random_frames(pool, Constraints(budget=10), seed=4)]
    assert len(set(first)) == 10


def test_knn_typicality_prefers_dense_points():
    """A tight cluster is more typical than isolated points; 1 / mean distance is the score."""
    points = np.array([[0.0], [0.1], [0.2], [5.0], [9.0]], dtype=np.float32)
    scores, mean_distance = knn_typicality(points, 2)
    assert mean_distance[1] == pytest.approx(0.1, abs=1e-4)
    assert scores[1] == pytest.approx(10.0, rel=1e-3)
    assert int(np.argmax(scores)) == 1 and int(np.argmin(scores)) == 4


def test_typicality_picks_one_representative_per_cluster():
    """Two blobs plus outliers: ranked alone the densest blob wins; clustered, each blob gets its most typical."""
    points, labels = blobs([30, 20])
    outliers = np.array([[0, 0, 0, 40], [0, 0, 40, 0]], dtype=np.float32)
    pool = make_pool(np.vstack([points, outliers]))
    ranked = typicality(pool, Constraints(budget=1), n_clusters=0, k=5)
    assert ranked[0].row < 50
    picks = typicality(pool, Constraints(budget=2), n_clusters=2, k=5)
    assert sorted(labels[p.row] for p in picks) == [0, 1]


def test_kmeans_recovers_blobs():
    """Seeded FAISS k-means separates well separated blobs."""
    points, labels = blobs([40, 30, 20])
    result = kmeans(points, 3, seed=1)
    for blob in range(3):
        assert np.unique(result.assignment[labels == blob]).size == 1
    assert np.unique(result.assignment).size == 3


def test_cluster_shares_hand_checked():
    """Sizes 60/30/10, 6 labeled in the first, budget 10: deficits 3.6/4.8/1.6 -> 4/5/1."""
    shares = cluster_shares(np.array([60.0, 30.0, 10.0]), np.array([6.0, 0.0, 0.0]), np.array([54, 30, 10]), 10)
    assert shares.tolist() == [4, 5, 1]


def test_cluster_strategy_is_proportional_and_central():
    """Blobs of 60/30/10 and budget 10 give 6/3/1 picks, each cluster's most central frame first."""
    points, labels = blobs([60, 30, 10])
    pool = make_pool(points)
    picks = cluster(pool, Constraints(budget=10), n_clusters=3, seed=0)
    counts = np.bincount(labels[[p.row for p in picks]], minlength=3)
    assert counts.tolist() == [6, 3, 1]
    smallest = [p for p in picks if labels[p.row] == 2][0]
    centre = points[labels == 2].mean(axis=0)
    distances = np.linalg.norm(points[labels == 2] - centre, axis=1)
    assert smallest.row == 90 + int(np.argmin(distances))


def test_cluster_strategy_balances_labeled_clusters():
    """With 6 labeled frames in the big blob, the picks shift to the others (4/5/1)."""
    points, labels = blobs([60, 30, 10])
    labeled = np.zeros(100, dtype=bool)
    labeled[:6] = True
    picks = cluster(make_pool(points, labeled=labeled), Constraints(budget=10), n_clusters=3, seed=0)
    assert np.bincount(labels[[p.row for p in picks]], minlength=3).tolist() == [4, 5, 1]


def test_hybrid_prefilter_stays_among_uncertain_frames():
    """k-center runs among the prefilter_factor x budget most uncertain frames."""
    rng = np.random.default_rng(0)
    points = rng.standard_normal((200, 8)).astype(np.float32)
    values = rng.random(200)
    pool = make_pool(points, uncertainty={"u": values})
    picks = hybrid(pool, Constraints(budget=5), mode="prefilter", prefilter_factor=4.0)
    top = set(np.argsort(-values)[:20].tolist())
    assert len(picks) == 5 and {p.row for p in picks} <= top
    assert picks[0].row == int(np.argmax(values))


def test_hybrid_weighted_endpoints():
    """Weight 1 is pure uncertainty order; weight 0 with labeled seeds is pure k-center."""
    rng = np.random.default_rng(1)
    points = rng.standard_normal((80, 5)).astype(np.float32)
    values = rng.random(80)
    labeled = np.zeros(80, dtype=bool)
    labeled[[3, 40]] = True
    pool = make_pool(points, labeled=labeled, uncertainty={"u": values})
    by_uncertainty = hybrid(pool, Constraints(budget=6), mode="weighted", uncertainty_weight=1.0)
    expected = [int(r) for r in np.argsort(-values) if not labeled[r]][:6]
    assert [p.row for p in by_uncertainty] == expected
    by_distance = hybrid(pool, Constraints(budget=6), mode="weighted", uncertainty_weight=0.0)
    assert [p.row for p in by_distance] == [p.row for p in kcenter(pool, Constraints(budget=6))]


def test_hybrid_rejects_bad_parameters():
    """Mode and weights are validated with the parameter's name."""
    pool = make_pool(np.zeros((5, 2)), uncertainty={"u": np.zeros(5)})
    with pytest.raises(SelectorError, match="mode"):
        hybrid(pool, Constraints(budget=2), mode="mixed")
    with pytest.raises(SelectorError, match="uncertainty_weight"):
        hybrid(pool, Constraints(budget=2), mode="weighted", uncertainty_weight=2.0)


def test_keyframes_scores_are_finite_with_no_keyframe_yet():
    """The first pick of a video with no labelled frame scored infinity (stored as inf, written by `select --json`
    as the non-JSON 'Infinity'); its score is the uncovered length of the video's path."""
    picks = keyframes(make_pool(np.ones((100, 3))), Constraints(budget=3))
    assert picks and all(math.isfinite(p.score) for p in picks)


def test_keyframes_static_scene_cover_time_evenly():
    """Identical frames: the path is time alone, so K keyframes sit at the centres of K equal stretches."""
    pool = make_pool(np.ones((100, 3)))
    assert [p.frame_id - 1000 for p in keyframes(pool, Constraints(budget=1))] == [50]
    assert sorted(p.frame_id - 1000 for p in keyframes(pool, Constraints(budget=2))) == [25, 74]
    picks = sorted(p.frame_id - 1000 for p in keyframes(pool, Constraints(budget=4)))
    assert all(abs(p - target) <= 1 for p, target in zip(picks, [12.4, 37.1, 61.9, 86.6]))


def test_keyframes_fill_the_gaps_left_by_labeled_frames():
    """A labeled first frame covers the start: one keyframe goes a third of the way into the open end."""
    labeled = np.zeros(100, dtype=bool)
    labeled[0] = True
    picks = keyframes(make_pool(np.ones((100, 3)), labeled=labeled), Constraints(budget=1))
    assert [p.frame_id - 1000 for p in picks] == [66]
    both = np.zeros(100, dtype=bool)
    both[[0, 99]] = True
    picks = keyframes(make_pool(np.ones((100, 3)), labeled=both), Constraints(budget=1))
    assert [p.frame_id - 1000 for p in picks] in ([49], [50])


def test_keyframes_favour_low_confidence_stretch():
    """An uncertain first third stretches the path there: both keyframes move towards it."""
    values = np.zeros(100)
    values[:30] = 1.0
    plain = keyframes(make_pool(np.ones((100, 3))), Constraints(budget=2))
    pool = make_pool(np.ones((100, 3)), uncertainty={"vos_confidence_gap": values})
    boosted = keyframes(pool, Constraints(budget=2), confidence_weight=3.0)
    assert sorted(p.frame_id for p in boosted) < sorted(p.frame_id for p in plain)
    assert sorted(p.frame_id - 1000 for p in boosted) == [12, 52]


def test_keyframes_need_a_signal_name_only_when_uncertainty_counts():
    """With several uncertainty signals the one to favour must be named, unless confidence_weight 0 ignores them
    (then the picks are the plain cover; before, the name was demanded anyway)."""
    signals = {"vos_uncertainty": np.linspace(0, 1, 100), "vss_margin": np.linspace(1, 0, 100)}
    pool = make_pool(np.ones((100, 3)), uncertainty=signals)
    with pytest.raises(SelectorError, match=r"name the signal to use, one of \['vos_uncertainty', 'vss_margin'\] "
                                            r"\(or set confidence_weight=0"):
        keyframes(pool, Constraints(budget=2))
    plain = keyframes(make_pool(np.ones((100, 3))), Constraints(budget=2))
    ignored = keyframes(pool, Constraints(budget=2), confidence_weight=0.0)
    assert [p.frame_id for p in ignored] == [p.frame_id for p in plain]
    named = keyframes(pool, Constraints(budget=2), signal="vss_margin")
    assert sorted(p.frame_id for p in named) != sorted(p.frame_id for p in plain)


def test_keyframes_follow_appearance_change():
    """Frames 0-79 barely change, 80-99 change fast: appearance alone puts most keyframes in the fast part."""
    slow = np.linspace(0.0, 1.0, 80)
    fast = np.linspace(1.0, 20.0, 20)
    embeddings = np.stack([np.concatenate([slow, fast]), np.zeros(100)], axis=1)
    picks = keyframes(make_pool(embeddings), Constraints(budget=3), time_weight=0.0)
    assert sum(p.frame_id - 1000 >= 80 for p in picks) >= 2


def test_keyframes_cover_each_scene():
    """Two scenes (frames 0-49 and 50-99), time ignored: one keyframe per scene."""
    embeddings = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0]]), 50, axis=0)
    picks = keyframes(make_pool(embeddings), Constraints(budget=2), time_weight=0.0)
    assert sorted(p.row // 50 for p in picks) == [0, 1]


def test_keyframes_respect_the_minimum_gap():
    """A minimum gap keeps keyframes apart even when the path would put two close together."""
    embeddings = np.stack([np.concatenate([np.zeros(90), np.linspace(0, 50, 10)]), np.zeros(100)], axis=1)
    picks = keyframes(make_pool(embeddings), Constraints(budget=3, min_gap_frames=5), time_weight=0.0)
    frames = sorted(p.frame_id - 1000 for p in picks)
    assert len(frames) == 3 and min(np.diff(frames)) >= 5


def test_keyframes_need_one_video():
    """Several videos in scope without video_id is refused; naming the video works."""
    pool = make_pool(np.zeros((20, 2)), video_ids=np.repeat([4, 5], 10))
    with pytest.raises(SelectorError, match="one video"):
        keyframes(pool, Constraints(budget=2))
    picks = keyframes(pool, Constraints(budget=2), video_id=5)
    assert {int(pool.video_ids[p.row]) for p in picks} == {5}


def test_knn_typicality_ivf_path_close_to_exact(monkeypatch):
    """Above the IVF threshold the re-ranked IVF-PQ kNN graph gives nearly the exact mean distances."""
    import segloop.selectors.typicality as typicality_module

    points, _ = blobs([1500, 1500], spread=1.0)
    exact_scores, exact_mean = knn_typicality(points, 5)
    monkeypatch.setattr(typicality_module, "KNN_IVF_THRESHOLD", 1000)
    approx_scores, approx_mean = knn_typicality(points, 5)
    relative = np.abs(approx_mean - exact_mean) / exact_mean
    assert np.median(relative) < 0.02
    assert np.all(approx_mean >= exact_mean - 1e-4)  # approximate neighbours are never closer than exact ones
