"""Selection runs on a project: build the candidate pool from the DB, run a strategy, persist the picks."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from segloop.platform.core.errors import NotFoundError, ValidationError
from segloop.platform.core.settings import Settings, load_settings
from segloop.platform.db.engine import get_engine, session_scope
from segloop.platform.db.entities import EmbeddingSetInfo, SelectionInfo, SelectionItemInfo
from segloop.platform.db.stores import annotations, artifacts, footage, projects, scores, selections
from segloop.platform.services.embedding import load_embedding_set
from segloop.platform.services.params import SelectParams
from segloop.selectors.constraints import Constraints, ConstraintTracker
from segloop.selectors.registry import StrategyInfo, run_strategy
from segloop.selectors.registry import strategies as registered_strategies
from segloop.selectors.types import CandidatePool, Pick, SelectorError


@dataclass(frozen=True)
class SelectionRun:
    """A persisted selection run with its picks."""

    selection: SelectionInfo
    items: list[SelectionItemInfo]


def strategies() -> dict[str, StrategyInfo]:
    """The strategies a selection can run, by name, with their summary and keyword parameters (defaults)."""
    return registered_strategies()


def labeled_frame_ids(session, project_id: int) -> set[int]:
    """Frames of a project that already have a human mask."""
    return annotations.human_labeled_frame_ids(session, project_id)


def resolve_embedding_set(session, project_id: int, embedding_set_id: int | None) -> EmbeddingSetInfo:
    """The given embedding set (checked to belong to the project) or the project's newest one."""
    if embedding_set_id is not None:
        chosen = artifacts.get_embedding_set(session, embedding_set_id)
        if chosen.project_id != project_id:
            raise ValueError(f"embedding set {embedding_set_id} belongs to another project")
        return chosen
    sets = artifacts.list_embedding_sets(session, project_id)
    if not sets:
        raise NotFoundError("the project has no embedding set yet: run `segloop embed --project NAME` first")
    return sets[0]


def build_pool(project: str, embedding_set_id: int | None = None, settings: Settings | None = None
               ) -> tuple[CandidatePool, EmbeddingSetInfo]:
    """The candidate pool of a project: its embedded frames with labels, picks, duplicates and signals."""
    settings = settings or load_settings()
    with session_scope(get_engine(settings)) as session:
        info = projects.get_project(session, project)
        embedding_set = resolve_embedding_set(session, info.id, embedding_set_id)
        frames = {f.id: f for f in footage.project_frames(session, info.id)}
        labeled = labeled_frame_ids(session, info.id)
        selected = selections.selected_frame_ids(session, info.id)
        signals = {name: scores.latest_frame_scores(session, info.id, name)
                   for name in scores.score_names(session, info.id)}
    vectors, frame_ids = load_embedding_set(embedding_set, settings)
    keep = np.array([int(i) in frames for i in frame_ids], dtype=bool)
    vectors, frame_ids = vectors[keep], frame_ids[keep]
    rows = [frames[int(i)] for i in frame_ids]
    video_ids = np.array([f.video_id for f in rows], dtype=np.int64)
    group_keys = video_ids * (1 << 32) + np.array([f.dup_group for f in rows])
    _, groups = np.unique(group_keys, return_inverse=True)
    pool = CandidatePool(
        embeddings=vectors,
        frame_ids=frame_ids,
        video_ids=video_ids,
        frame_indices=np.array([f.index for f in rows], dtype=np.int64),
        timestamps=np.array([f.timestamp for f in rows], dtype=np.float64),
        duplicate_groups=groups.astype(np.int64),
        labeled=np.array([int(i) in labeled for i in frame_ids], dtype=bool),
        selected=np.array([int(i) in selected for i in frame_ids], dtype=bool),
        uncertainty={name: _dense_signal(values, frame_ids) for name, values in signals.items() if values},
    )
    return pool, embedding_set


def _dense_signal(values: dict[int, float], frame_ids: np.ndarray) -> np.ndarray:
    """A per-row signal; frames the model never scored get the mean of the scored ones."""
    known = np.array([values[int(i)] for i in frame_ids if int(i) in values], dtype=np.float64)
    fill = float(known.mean()) if known.size else 0.0
    return np.array([values.get(int(i), fill) for i in frame_ids], dtype=np.float64)


LIMITING_CONSTRAINTS = ("budget", "min_gap_frames", "min_gap_seconds", "max_per_video", "videos", "time_range")


def constraints_of(params: SelectParams) -> Constraints:
    """The constraints a select operation's params describe (SelectorError naming the field when they cannot)."""
    if params.time_range and len(params.time_range) != 2:
        raise SelectorError(f"time_range: give START and END in seconds (or nothing), got {len(params.time_range)} "
                            "value(s)")
    return Constraints(
        budget=params.budget, exclude_labeled=not params.include_labeled, exclude_selected=not params.include_selected,
        one_per_duplicate_group=params.one_per_duplicate_group, min_gap_frames=params.min_gap_frames,
        min_gap_seconds=params.min_gap_seconds, max_per_video=params.max_per_video,
        videos=tuple(params.videos) or None, time_range=tuple(params.time_range) or None,
    )


def select(params: SelectParams, *, settings: Settings | None = None, job_id: int | None = None,
           allow_empty: bool = True) -> SelectionRun:
    """Run the select operation its params describe (the CLI, the select job and the Select page)."""
    return run_selection(params.project, params.strategy, constraints_of(params), params.params,
                         params.embedding_set_id, settings=settings, job_id=job_id, allow_empty=allow_empty)


def select_values(values: dict[str, Any], *, settings: Settings | None = None,
                  allow_empty: bool = True) -> SelectionRun:
    """The select operation from a form's field values, checked as a select job's params are, then run."""
    from segloop.platform.core.specs import coerce
    from segloop.platform.services.jobs import verify_params

    settings = settings or load_settings()
    params = verify_params(get_engine(settings), "select", coerce(SelectParams, values, where="select params"))
    return select(params, settings=settings, allow_empty=allow_empty)


def run_selection(
    project: str,
    strategy: str,
    constraints: Constraints,
    params: dict[str, Any] | None = None,
    embedding_set_id: int | None = None,
    *,
    settings: Settings | None = None,
    job_id: int | None = None,
    allow_empty: bool = True,
    record: dict[str, Any] | None = None,
) -> SelectionRun:
    """Run a strategy on the project's pool and store the run with every pick's rank, score and reason (and
    `record`, stored with the run's params only: e.g. the loop round it belongs to).

    With `allow_empty=False` a run that picks nothing is refused (ValidationError naming the constraints) and not
    stored, so it cannot become anyone's labeling queue.
    """
    settings = settings or load_settings()
    params = dict(params or {})
    for _ in range(STORE_ATTEMPTS):
        pool, embedding_set = build_pool(project, embedding_set_id, settings)
        _check_scope_videos(constraints, pool, project, embedding_set.id)
        picks: list[Pick] = run_strategy(strategy, pool, constraints, **params)
        if not picks and not allow_empty:
            raise NothingToPick(f"{strategy} picked no frame: {_why_nothing(pool, constraints)}; nothing was stored")
        with session_scope(get_engine(settings)) as session:
            info = projects.lock_project(session, project)
            if _taken_meanwhile(session, info.id, picks, constraints):
                continue
            recorded = {**params, "constraints": _constraints_dict(constraints), **(record or {})}
            run = selections.add_selection(
                session, info.id, strategy, constraints.budget, [(p.frame_id, p.score, p.reason) for p in picks],
                params=recorded, seed=params.get("seed"), embedding_set_id=embedding_set.id, job_id=job_id,
            )
            return SelectionRun(run, selections.selection_items(session, run.id))
    raise ValidationError(f"other selection runs on project {project!r} stored picks while this one ran "
                          f"({STORE_ATTEMPTS} times); nothing was stored: run it again")


STORE_ATTEMPTS = 3


def _taken_meanwhile(session, project_id: int, picks: list[Pick], constraints: Constraints) -> bool:
    """Whether a pick was picked by another run or labelled since the pool was read (the run must then be redone
    on the new pool, so that runs started at the same moment never queue one frame twice)."""
    taken: set[int] = set()
    if constraints.exclude_selected:
        taken |= selections.selected_frame_ids(session, project_id)
    if constraints.exclude_labeled:
        taken |= labeled_frame_ids(session, project_id)
    return any(int(p.frame_id) in taken for p in picks)


class NothingToPick(ValidationError):
    """A selection found no frame it could pick (every frame labelled, picked before, or outside the constraints)."""


def _why_nothing(pool: CandidatePool, constraints: Constraints) -> str:
    """Why no frame of the pool could be picked: the constraints set and the frames the exclusions took away."""
    tracker = ConstraintTracker(pool, constraints)
    blocked = np.zeros(pool.size, dtype=bool)
    excluded = []
    for mask, what, on in ((pool.labeled, "labeled", constraints.exclude_labeled),
                           (pool.selected, "selected by earlier runs", constraints.exclude_selected)):
        if on and (mask & tracker.in_scope & ~blocked).any():
            excluded.append(f"{int((mask & tracker.in_scope & ~blocked).sum())} {what}")
        blocked |= mask if on else False
    duplicates = int((tracker.in_scope & ~blocked & ~tracker.eligible).sum())
    if duplicates:
        excluded.append(f"{duplicates} near-duplicate{'s' if duplicates != 1 else ''} of those")
    limits = {k: v for k, v in _constraints_dict(constraints).items()
              if k in LIMITING_CONSTRAINTS and v not in (None, 0, 0.0, [], ())}
    return (f"no frame of the {len(pool.frame_ids)} in the pool satisfies the constraints "
            f"({', '.join(f'{k} {v}' for k, v in limits.items())})"
            + (f"; excluded: {', '.join(excluded)}" if excluded else ""))


def _check_scope_videos(constraints: Constraints, pool: CandidatePool, project: str, embedding_set_id: int) -> None:
    """Every video the constraints restrict to has frames in the pool (ValidationError naming the others)."""
    missing = sorted(set(constraints.videos or ()) - {int(v) for v in np.unique(pool.video_ids)})
    if missing:
        raise ValidationError(f"videos: {', '.join(map(str, missing))} not in project {project!r} or not embedded "
                              f"(embedding set {embedding_set_id}); nothing was stored")


def _constraints_dict(constraints: Constraints) -> dict[str, Any]:
    """JSON-ready constraints."""
    from dataclasses import asdict

    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(constraints).items()}


def show_selection(selection_id: int, settings: Settings | None = None
                   ) -> tuple[SelectionRun, dict[int, tuple[str, int]]]:
    """A stored run with {frame_id: (video name, frame index)} for display."""
    settings = settings or load_settings()
    with session_scope(get_engine(settings)) as session:
        run = selections.get_selection(session, selection_id)
        items = selections.selection_items(session, selection_id)
        where = {}
        for item in items:
            frame = footage.get_frame(session, item.frame_id)
            where[item.frame_id] = (footage.get_video(session, frame.video_id).name, frame.index)
    return SelectionRun(run, items), where
