"""Every registered strategy respects the budget and every constraint, and fills the budget when it can.

The checker below re-derives each rule from the pool and the constraints on its own (it does not
use ConstraintTracker), so a tracker bug cannot hide a strategy bug.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segloop.selectors.constraints import Constraints
from segloop.selectors.registry import check_params, run_strategy, strategies
from segloop.selectors.types import NO_GROUP, CandidatePool, Pick, SelectorError

FPS = 10.0


@st.composite
def pools(draw) -> CandidatePool:
    """Small random pools: 1-3 videos, near-duplicate groups, labeled/selected frames, one uncertainty signal."""
    seed = draw(st.integers(0, 2**32 - 1))
    size = draw(st.integers(1, 40))
    dim = draw(st.integers(1, 5))
    n_videos = draw(st.integers(1, 3))
    duplicate_rate = draw(st.sampled_from([0.0, 0.3, 0.8]))
    labeled_rate = draw(st.sampled_from([0.0, 0.1, 0.4]))
    rng = np.random.default_rng(seed)
    video_ids = np.sort(rng.integers(0, n_videos, size)) + 7
    frame_indices = np.concatenate([np.arange((video_ids == v).sum()) for v in np.unique(video_ids)])
    groups = np.where(rng.random(size) < duplicate_rate, rng.integers(0, max(1, size // 3), size), NO_GROUP)
    embeddings = rng.standard_normal((size, dim)).astype(np.float32)
    if draw(st.booleans()):
        embeddings = np.round(embeddings)  # exact ties and duplicates
    return CandidatePool(
        embeddings=embeddings,
        frame_ids=rng.permutation(size) * 3 + 100,
        video_ids=video_ids,
        frame_indices=frame_indices,
        timestamps=frame_indices / FPS,
        duplicate_groups=groups,
        labeled=rng.random(size) < labeled_rate,
        selected=rng.random(size) < labeled_rate / 2,
        uncertainty={"entropy_mean": np.round(rng.random(size), 1)},
    )


@st.composite
def constraint_sets(draw, pool: CandidatePool, single_video: bool) -> Constraints:
    """Random constraints over a pool; one video in scope when `single_video`."""
    videos = np.unique(pool.video_ids).tolist()
    if single_video:
        chosen = (draw(st.sampled_from(videos)),)
    else:
        chosen = draw(st.one_of(st.none(), st.lists(st.sampled_from(videos), min_size=1, unique=True).map(tuple)))
    time_range = draw(st.one_of(st.none(),
                                st.tuples(st.floats(0, 2), st.floats(0, 3)).map(lambda t: (t[0], t[0] + t[1]))))
    return Constraints(
        budget=draw(st.integers(0, 15)),
        exclude_labeled=draw(st.booleans()),
        exclude_selected=draw(st.booleans()),
        one_per_duplicate_group=draw(st.booleans()),
        min_gap_frames=draw(st.sampled_from([0, 0, 1, 2, 4])),
        min_gap_seconds=draw(st.sampled_from([0.0, 0.0, 0.15, 0.3])),
        max_per_video=draw(st.sampled_from([None, 1, 2, 4])),
        videos=chosen,
        time_range=time_range,
    )


def blocked_by(pool: CandidatePool, constraints: Constraints, picked: list[int], row: int) -> str | None:
    """Why `row` may not be picked next given `picked` (None when it may)."""
    if constraints.videos is not None and pool.video_ids[row] not in constraints.videos:
        return "outside the requested videos"
    if constraints.time_range is not None:
        start, end = constraints.time_range
        if not start <= pool.timestamps[row] <= end:
            return "outside the time range"
    if row in picked:
        return "picked twice"
    if constraints.exclude_labeled and pool.labeled[row]:
        return "labeled"
    if constraints.exclude_selected and pool.selected[row]:
        return "already selected"
    group = pool.duplicate_groups[row]
    if constraints.one_per_duplicate_group and group != NO_GROUP:
        covered = list(picked)
        if constraints.exclude_labeled:
            covered += np.flatnonzero(pool.labeled).tolist()
        if constraints.exclude_selected:
            covered += np.flatnonzero(pool.selected).tolist()
        if any(pool.duplicate_groups[other] == group for other in covered):
            return "near-duplicate group already covered"
    same_video = [other for other in picked if pool.video_ids[other] == pool.video_ids[row]]
    for other in same_video:
        if abs(int(pool.frame_indices[other]) - int(pool.frame_indices[row])) < constraints.min_gap_frames:
            return "closer than min_gap_frames"
        seconds_gap = constraints.min_gap_seconds
        if seconds_gap > 0 and abs(pool.timestamps[other] - pool.timestamps[row]) < seconds_gap:
            return "closer than min_gap_seconds"
    if constraints.max_per_video is not None and len(same_video) >= constraints.max_per_video:
        return "video cap reached"
    return None


def check_picks(pool: CandidatePool, constraints: Constraints, picks: list[Pick], single_video: int | None) -> None:
    """Assert budget, ranks, every constraint, and that a short answer means nothing else was pickable."""
    assert len(picks) <= constraints.budget
    assert [p.rank for p in picks] == list(range(1, len(picks) + 1))
    picked: list[int] = []
    for pick in picks:
        assert pool.frame_ids[pick.row] == pick.frame_id
        assert isinstance(pick.reason, str) and pick.reason
        reason = blocked_by(pool, constraints, picked, pick.row)
        assert reason is None, f"pick {pick.rank} (row {pick.row}) violates: {reason}"
        picked.append(pick.row)
    if len(picks) < constraints.budget:
        for row in range(pool.size):
            if single_video is not None and pool.video_ids[row] != single_video:
                continue
            assert blocked_by(pool, constraints, picked, row) is not None, f"row {row} was pickable but left out"


NAMES = sorted(strategies())


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_strategy_respects_constraints(name, data):
    """Budget, exclusions, near-duplicates, gaps, caps and scope hold for every strategy."""
    pool = data.draw(pools())
    single = name == "keyframes"
    constraints = data.draw(constraint_sets(pool, single))
    picks = run_strategy(name, pool, constraints)
    check_picks(pool, constraints, picks, constraints.videos[0] if single else None)


@pytest.mark.parametrize("name", NAMES)
def test_strategy_is_deterministic(name):
    """Same pool, same constraints, same parameters: same picks."""
    rng = np.random.default_rng(11)
    size = 60
    pool = CandidatePool(
        embeddings=rng.standard_normal((size, 4)).astype(np.float32), frame_ids=np.arange(size),
        video_ids=np.zeros(size, dtype=np.int64), frame_indices=np.arange(size),
        uncertainty={"u": rng.random(size)},
    )
    constraints = Constraints(budget=6, min_gap_frames=2)
    first = run_strategy(name, pool, constraints)
    second = run_strategy(name, pool, constraints)
    assert [(p.frame_id, p.reason) for p in first] == [(p.frame_id, p.reason) for p in second]
    assert len(first) == 6


def test_unknown_strategy_and_parameter_are_named():
    """The registry names the unknown strategy or parameter and lists what exists."""
    pool = CandidatePool(np.zeros((2, 2), dtype=np.float32), [1, 2], [0, 0], [0, 1])
    with pytest.raises(SelectorError, match="strategy 'nope' is unknown; known strategies: .*kcenter"):
        run_strategy("nope", pool, Constraints(budget=1))
    with pytest.raises(SelectorError, match="unknown parameter.*'bogus'"):
        run_strategy("kcenter", pool, Constraints(budget=1), bogus=3)


BAD_PARAMETERS = [
    ("random", {"seed": "x"}, "random: seed must be an integer, got 'x'"),
    ("random", {"seed": 1.5}, "random: seed must be an integer, got 1.5"),
    ("random", {"seed": -1}, r"random: seed must lie in \[0, 2147483647\], got -1"),
    ("random", {"seed": True}, "random: seed must be an integer, got True"),
    ("random", {"seed": 2**63}, r"random: seed must lie in \[0, 2147483647\], got 9223372036854775808"),
    ("cluster", {"seed": 2**31}, r"cluster: seed must lie in \[0, 2147483647\], got 2147483648"),
    ("typicality", {"seed": 2**31}, r"typicality: seed must lie in \[0, 2147483647\], got 2147483648"),
    ("hybrid", {"prefilter_factor": 1e308}, r"hybrid: prefilter_factor must lie in \[1.0, 1000.0\], got 1e\+308"),
    ("typicality", {"k": "x"}, "typicality: k must be an integer, got 'x'"),
    ("typicality", {"k": 0}, "typicality: k must be >= 1, got 0"),
    ("cluster", {"niter": -3}, "cluster: niter must be >= 1, got -3"),
    ("cluster", {"n_clusters": 0}, r"cluster: n_clusters must be >= 1 or -1, got 0"),
    ("kcenter", {"device": "x"}, "kcenter: device must be one of auto, numpy, cpu, cuda, got 'x'"),
    ("hybrid", {"prefilter_factor": "x"}, "hybrid: prefilter_factor must be a number, got 'x'"),
    ("hybrid", {"uncertainty_weight": 2}, r"hybrid: uncertainty_weight must lie in \[0.0, 1.0\], got 2"),
    ("hybrid", {"mode": "mixed"}, "hybrid: mode must be one of prefilter, weighted, got 'mixed'"),
    ("keyframes", {"time_weight": float("nan")}, "keyframes: time_weight must be a finite number, got nan"),
    ("keyframes", {"confidence_weight": float("inf")}, "keyframes: confidence_weight must be a finite number, got inf"),
    ("keyframes", {"time_weight": -0.5}, r"keyframes: time_weight must be >= 0.0, got -0.5"),
    ("keyframes", {"signal": 5}, "keyframes: signal must be text, got 5"),
    ("uncertainty", {"signal": ["u"]}, r"uncertainty: signal must be text, got \['u'\]"),
]


@pytest.mark.parametrize(("name", "params", "message"), BAD_PARAMETERS,
                         ids=[f"{n}-{next(iter(p))}-{p[next(iter(p))]}" for n, p, _ in BAD_PARAMETERS])
def test_bad_strategy_parameters_are_refused_by_name(name: str, params: dict, message: str) -> None:
    """A parameter of the wrong type, not finite, outside its limits or choices is refused naming the strategy,
    parameter and value: by `check_params` (what job submission calls) and by the strategy itself, so a direct
    library call gets the same message; nothing is picked."""
    pool = CandidatePool(np.zeros((4, 2), dtype=np.float32), [1, 2, 3, 4], [0, 0, 0, 0], [0, 1, 2, 3],
                         uncertainty={"u": np.linspace(0, 1, 4)})
    with pytest.raises(SelectorError, match=f"^{message}$"):
        check_params(name, params)
    with pytest.raises(SelectorError, match=f"^{message}$"):
        strategies()[name].fn(pool, Constraints(budget=2), **params)


def test_good_strategy_parameters_pass_as_given() -> None:
    """Defaults, special values (-1: one cluster per pick), numpy integers for integer parameters, integers for
    float ones and None for optional ones are accepted unchanged."""
    for name, info in strategies().items():
        assert check_params(name, dict(info.params)) == info.params, name
    assert check_params("cluster", {"n_clusters": -1, "seed": np.int64(3)}) == {"n_clusters": -1, "seed": 3}
    assert check_params("keyframes", {"time_weight": 2, "video_id": None}) == {"time_weight": 2, "video_id": None}


def test_every_strategy_is_documented():
    """Each registered strategy has a one-line summary for `segloop select --help`."""
    for name, info in strategies().items():
        assert info.summary, name
    assert {"random", "uniform", "kcenter", "typicality", "cluster", "uncertainty", "hybrid", "keyframes"} <= set(NAMES)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"budget": -1}, "budget"),
        ({"budget": 2, "min_gap_frames": -1}, "min_gap_frames"),
        ({"budget": 2, "max_per_video": 0}, "max_per_video"),
        ({"budget": 2, "time_range": (3.0, 1.0)}, "time_range"),
    ],
)
def test_bad_constraints_are_named(kwargs, message):
    """Impossible constraints raise a SelectorError naming the field."""
    with pytest.raises(SelectorError, match=message):
        Constraints(**kwargs)


def test_time_constraints_need_timestamps():
    """A time range on a pool without timestamps is refused with a clear message."""
    pool = CandidatePool(np.zeros((2, 2), dtype=np.float32), [1, 2], [0, 0], [0, 1])
    with pytest.raises(SelectorError, match="no timestamps"):
        run_strategy("random", pool, Constraints(budget=1, time_range=(0.0, 1.0)))


def test_pool_validation_names_the_field():
    """Mismatched or invalid pool arrays raise a SelectorError naming the field."""
    with pytest.raises(SelectorError, match="frame_ids"):
        CandidatePool(np.zeros((3, 2), dtype=np.float32), [1, 1, 2], [0, 0, 0], [0, 1, 2])
    with pytest.raises(SelectorError, match="video_ids"):
        CandidatePool(np.zeros((3, 2), dtype=np.float32), [1, 2, 3], [0, 0], [0, 1, 2])
    with pytest.raises(SelectorError, match="labeled"):
        CandidatePool(np.zeros((3, 2), dtype=np.float32), [1, 2, 3], [0, 0, 0], [0, 1, 2], labeled=[0, 1, 0])
    with pytest.raises(SelectorError, match=r"uncertainty\['u'\]"):
        CandidatePool(np.zeros((3, 2), dtype=np.float32), [1, 2, 3], [0, 0, 0], [0, 1, 2],
                      uncertainty={"u": [0, np.nan, 1]})


def test_rows_of_maps_frame_ids():
    """rows_of finds the rows of frame ids and names missing ones."""
    pool = CandidatePool(np.zeros((3, 2), dtype=np.float32), [30, 10, 20], [0, 0, 0], [0, 1, 2])
    assert pool.rows_of([10, 30]).tolist() == [1, 0]
    with pytest.raises(SelectorError, match="99"):
        pool.rows_of([99])


def test_hand_checked_constraints_on_random():
    """Two videos of 10 frames, gap 3, cap 2, one duplicate group: a hand-checkable case."""
    size = 20
    groups = np.full(size, NO_GROUP)
    groups[[0, 1, 2]] = 5
    pool = CandidatePool(
        embeddings=np.zeros((size, 1), dtype=np.float32), frame_ids=np.arange(size),
        video_ids=np.repeat([0, 1], 10), frame_indices=np.tile(np.arange(10), 2), duplicate_groups=groups,
    )
    constraints = Constraints(budget=10, min_gap_frames=3, max_per_video=2)
    picks = run_strategy("random", pool, constraints, seed=1)
    assert len(picks) == 4
    check_picks(pool, constraints, picks, None)
    for a, b in itertools.combinations(picks, 2):
        if pool.video_ids[a.row] == pool.video_ids[b.row]:
            assert abs(pool.frame_indices[a.row] - pool.frame_indices[b.row]) >= 3


@pytest.mark.parametrize(("fields", "message"), [
    ({"budget": -1}, "budget: must be a non-negative integer, got -1"),
    ({"budget": 1.5}, "budget: must be a non-negative integer, got 1.5"),
    ({"budget": True}, "budget: must be a non-negative integer, got True"),
    ({"min_gap_frames": -2}, "min_gap_frames: must be >= 0, got -2"),
    ({"min_gap_seconds": float("inf")}, "min_gap_seconds: must be a finite number >= 0, got inf"),
    ({"min_gap_seconds": float("nan")}, "min_gap_seconds: must be a finite number >= 0, got nan"),
    ({"max_per_video": 0}, "max_per_video: must be >= 1, got 0"),
    ({"time_range": (float("nan"), 4.0)}, "time_range: start and end must be finite seconds, got nan and 4.0"),
    ({"time_range": (5.0, 1.0)}, "time_range: start must be <= end, got 5.0 and 1.0"),
])
def test_constraints_that_cannot_describe_a_selection_are_refused_by_field(fields: dict, message: str) -> None:
    """Each impossible constraint is refused naming its field in the words a user typed (no class name)."""
    with pytest.raises(SelectorError, match=f"^{message}$"):
        Constraints(**{"budget": 3, **fields})
