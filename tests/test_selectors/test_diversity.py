"""kcenter_greedy against a brute-force float64 reference, plus the k-center strategy's seeding."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from segloop.selectors.constraints import Constraints
from segloop.selectors.diversity import FarthestFirst, LazyFarthestFirst, _farthest_first_rows, kcenter, kcenter_greedy
from segloop.selectors.types import CandidatePool, SelectorError


def brute_force_kcenter(points: np.ndarray, budget: int, already: tuple[int, ...] = ()) -> tuple[list[int], float]:
    """(picks, smallest gap between the best and runner-up distance over all steps), float64, full matrix."""
    x = points.astype(np.float64)
    distances = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    chosen = list(dict.fromkeys(already))
    picks: list[int] = []
    smallest_gap = np.inf
    if chosen:
        nearest = distances[:, chosen].min(axis=1)
    else:
        nearest = np.sqrt(((x - x.mean(axis=0)) ** 2).sum(-1))
    count = min(budget, len(x) - len(chosen))
    for _ in range(count):
        candidates = nearest.copy()
        candidates[chosen + picks] = -np.inf
        order = np.argsort(-candidates, kind="stable")
        if len(order) > len(chosen) + len(picks) + 1:
            smallest_gap = min(smallest_gap, candidates[order[0]] - candidates[order[1]])
        pick = int(order[0])
        picks.append(pick)
        nearest = distances[:, pick] if not chosen and len(picks) == 1 else np.minimum(nearest, distances[:, pick])
    return picks, smallest_gap


def cover_radius(points: np.ndarray, centers: list[int]) -> float:
    """Largest distance from any point to its nearest center (float64)."""
    x = points.astype(np.float64)
    return float(np.sqrt(((x[:, None, :] - x[None, centers, :]) ** 2).sum(-1)).min(axis=1).max())


@settings(max_examples=60, deadline=None, database=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    size=st.integers(2, 60),
    dim=st.integers(1, 12),
    budget=st.integers(0, 25),
    n_already=st.integers(0, 5),
    offset=st.sampled_from([0.0, 3.0, 100.0]),
)
def test_matches_brute_force_picks(seed, size, dim, budget, n_already, offset):
    """Same picks as the float64 brute force whenever no near-tie makes the order ambiguous."""
    rng = np.random.default_rng(seed)
    points = (rng.standard_normal((size, dim)) + offset).astype(np.float32)
    already = tuple(int(i) for i in rng.choice(size, min(n_already, size - 1), replace=False))
    expected, gap = brute_force_kcenter(points, budget, already)
    assume(gap > 1e-3)
    picks = kcenter_greedy(points, budget, already)
    assert picks.dtype == np.int64
    assert picks.tolist() == expected


@settings(max_examples=40, deadline=None, database=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(2, 50), dim=st.integers(1, 8), budget=st.integers(1, 20))
def test_cover_radius_never_worse_than_brute_force(seed, size, dim, budget):
    """Even with ties, the max-min radius equals the brute force one up to float error."""
    rng = np.random.default_rng(seed)
    points = rng.integers(-3, 4, size=(size, dim)).astype(np.float32)  # many exact ties
    expected, _ = brute_force_kcenter(points, budget)
    picks = kcenter_greedy(points, budget).tolist()
    assert len(picks) == len(expected) == min(budget, size)
    assert cover_radius(points, picks) <= cover_radius(points, expected) + 1e-4


def test_hand_checked_order_with_ties_to_lowest_index():
    """Points 0, 1, -1 on a line: first the lowest of the two farthest from the mean, then the other end."""
    points = np.array([[0.0], [1.0], [-1.0], [0.5]], dtype=np.float32)
    # mean 0.125: row 2 (-1) is farthest (1.125); then row 1 (d=2 from -1); then row 0 (d=1); then row 3.
    assert kcenter_greedy(points, 4).tolist() == [2, 1, 0, 3]
    symmetric = np.array([[0.0], [1.0], [-1.0]], dtype=np.float32)
    assert kcenter_greedy(symmetric, 3).tolist() == [1, 2, 0]


def test_already_selected_seed_and_are_never_returned():
    """Seeds count as covered: the first pick is the point farthest from them."""
    points = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0], [0.0, 2.0]], dtype=np.float32)
    assert kcenter_greedy(points, 2, already_selected=[0]).tolist() == [2, 3]
    assert kcenter_greedy(points, 10, already_selected=[0, 2]).tolist() == [3, 1]
    assert kcenter_greedy(points, 5, already_selected=[0, 1, 2, 3]).size == 0


def test_duplicates_and_budget_clipping():
    """Exact duplicates are picked after distinct points, lowest index first; budget is clipped to N."""
    points = np.array([[1.0], [1.0], [1.0], [4.0]], dtype=np.float32)
    assert kcenter_greedy(points, 10).tolist() == [3, 0, 1, 2]
    assert kcenter_greedy(points, 0).size == 0


@pytest.mark.parametrize(
    "args, message",
    [
        ((np.zeros(5, dtype=np.float32), 2), "2-D"),
        ((np.zeros((5, 2), dtype=np.int64), 2), "floats"),
        ((np.full((5, 2), np.nan, dtype=np.float32), 2), "NaN"),
        ((np.zeros((5, 2), dtype=np.float32), -1), "budget"),
        ((np.zeros((5, 2), dtype=np.float32), 2, [7]), "already_selected"),
    ],
)
def test_bad_input_is_named(args, message):
    """Bad input raises a SelectorError (a ValueError) that says what is wrong."""
    with pytest.raises(SelectorError, match=message):
        kcenter_greedy(*args)


def test_torch_backend_matches_numpy():
    """The torch code path (used on GPU) gives the same picks as NumPy, here on CPU."""
    pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    points = rng.standard_normal((300, 16)).astype(np.float32)
    reference = kcenter_greedy(points, 30, already_selected=[5, 9])
    engine = FarthestFirst(points, device="cpu")
    engine.add_centers(points[[5, 9]])
    engine.block([5, 9])
    picks = []
    for _ in range(30):
        row, _ = engine.farthest()
        picks.append(row)
        engine.add_row(row)
        engine.block([row])
    assert picks == reference.tolist()


def test_blocked_seeding_equals_row_seeding():
    """Seeding with many external centers block by block equals adding them one by one."""
    rng = np.random.default_rng(4)
    points = rng.standard_normal((500, 8)).astype(np.float32)
    centers = rng.standard_normal((2000, 8)).astype(np.float32)
    blocked = FarthestFirst(points, device="numpy")
    blocked.add_centers(centers)
    exact = np.sqrt(((points[:, None, :].astype(np.float64) - centers[None]) ** 2).sum(-1)).min(axis=1)
    np.testing.assert_allclose(np.sqrt(blocked.values()), exact, rtol=1e-4, atol=1e-3)


def test_strategy_seeds_with_labeled_and_respects_budget():
    """The kcenter strategy starts from the labeled frames and reports distances as scores."""
    embeddings = np.array([[0.0], [0.1], [10.0], [5.0], [-3.0]], dtype=np.float32)
    pool = CandidatePool(
        embeddings=embeddings, frame_ids=np.arange(10, 15), video_ids=np.zeros(5, dtype=np.int64),
        frame_indices=np.arange(5), labeled=np.array([True, False, False, False, False]),
    )
    picks = kcenter(pool, Constraints(budget=2))
    assert [p.frame_id for p in picks] == [12, 13]
    assert [p.rank for p in picks] == [1, 2]
    assert picks[0].score == pytest.approx(10.0)
    assert picks[1].score == pytest.approx(5.0)
    assert "d=10" in picks[0].reason


def test_torch_backend_first_pick_and_strategy_match_numpy():
    """Unseeded first pick and the constrained strategy agree between the torch and NumPy paths."""
    pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    points = rng.standard_normal((200, 6)).astype(np.float32) + 2.0
    np.testing.assert_allclose(
        FarthestFirst(points, device="cpu").distances_to_mean(),
        FarthestFirst(points, device="numpy").distances_to_mean(),
        rtol=1e-4, atol=1e-4,
    )
    pool = CandidatePool(
        embeddings=points, frame_ids=np.arange(200), video_ids=np.repeat([0, 1], 100),
        frame_indices=np.tile(np.arange(100), 2), labeled=rng.random(200) < 0.05,
    )
    constraints = Constraints(budget=15, min_gap_frames=3, max_per_video=10)
    on_torch = [p.frame_id for p in kcenter(pool, constraints, device="cpu")]
    assert on_torch == [p.frame_id for p in kcenter(pool, constraints, device="numpy")]
    unseeded = CandidatePool(points, np.arange(200), np.zeros(200, dtype=np.int64), np.arange(200))
    picks = kcenter(unseeded, Constraints(budget=5), device="cpu")
    assert [p.frame_id for p in picks] == kcenter_greedy(points, 5).tolist()


def test_far_from_origin_data_is_recentred():
    """Data offset by 1e4 (|mean|^2 >> variance) still gives the brute-force picks."""
    rng = np.random.default_rng(6)
    points = (rng.standard_normal((40, 3)) * 0.5 + 1e4).astype(np.float32)
    engine = FarthestFirst(points, device="numpy")
    assert engine.shift is not None
    expected, gap = brute_force_kcenter(points, 10)
    assert gap > 1e-3
    assert kcenter_greedy(points, 10).tolist() == expected


def run_engine(engine: FarthestFirst, seeds: list[int], picks: int) -> list[int]:
    """Seed an engine with rows, then take farthest-first picks (the driver kcenter_greedy uses)."""
    return _farthest_first_rows(engine, np.asarray(seeds, dtype=np.int64), picks)


@pytest.mark.parametrize("first_candidates", [4, 256])
def test_lazy_engine_matches_full_updates(monkeypatch, first_candidates):
    """Lazy updates give the same picks and final distances as updating every row after each pick."""
    monkeypatch.setattr(LazyFarthestFirst, "FIRST_CANDIDATES", first_candidates)
    monkeypatch.setattr(LazyFarthestFirst, "ROW_BLOCK", 97)
    rng = np.random.default_rng(7)
    points = rng.standard_normal((3000, 12)).astype(np.float32)
    lazy, full = LazyFarthestFirst(points), FarthestFirst(points, device="numpy")
    assert run_engine(lazy, [5, 77, 2999], 150) == run_engine(full, [5, 77, 2999], 150)
    np.testing.assert_allclose(lazy.values(), full.values(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("first_candidates", [4, 256])
def test_lazy_engine_resolves_exact_ties_to_lowest_row(monkeypatch, first_candidates):
    """On a small integer grid (exact float arithmetic, many ties and duplicates) both engines agree."""
    monkeypatch.setattr(LazyFarthestFirst, "FIRST_CANDIDATES", first_candidates)
    rng = np.random.default_rng(8)
    points = rng.integers(-2, 3, size=(1500, 3)).astype(np.float32)
    lazy, full = LazyFarthestFirst(points), FarthestFirst(points, device="numpy")
    assert run_engine(lazy, [0], 400) == run_engine(full, [0], 400)


def test_large_set_matches_brute_force():
    """N = 800 (beyond the lazy engine's first candidate window): still the brute-force picks."""
    rng = np.random.default_rng(12)  # a seed whose traversal has no near-tie (gap > 1e-4)
    points = rng.standard_normal((800, 10)).astype(np.float32)
    expected, gap = brute_force_kcenter(points, 120, already=(3, 500))
    assert gap > 1e-4
    assert kcenter_greedy(points, 120, already_selected=[3, 500]).tolist() == expected
