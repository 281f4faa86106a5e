"""Selection runs and their ranked picks."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from segloop.platform.db.entities import FrameInfo, SelectionInfo, SelectionItemInfo, from_row
from segloop.platform.db.orm import Frame, Selection, SelectionItem, Video
from segloop.platform.db.stores import get_row

ITEM_STATUSES = ("proposed", "accepted", "rejected")


def add_selection(
    session: Session,
    project_id: int,
    strategy: str,
    budget: int,
    picks: Sequence[tuple[int, float, str]],
    *,
    params: dict[str, Any] | None = None,
    seed: int | None = None,
    embedding_set_id: int | None = None,
    job_id: int | None = None,
) -> SelectionInfo:
    """Store a selection run with its picks given as (frame_id, score, reason) in rank order."""
    row = Selection(project_id=project_id, strategy=strategy, budget=budget, params=params or {}, seed=seed,
                    embedding_set_id=embedding_set_id, job_id=job_id)
    session.add(row)
    session.flush()
    if picks:
        session.execute(
            insert(SelectionItem),
            [dict(selection_id=row.id, frame_id=int(f), rank=rank, score=float(s), reason=r, status="proposed")
             for rank, (f, s, r) in enumerate(picks, start=1)],
        )
    return from_row(SelectionInfo, row)


def get_selection(session: Session, selection_id: int) -> SelectionInfo:
    """The selection run with this id, or NotFoundError."""
    return from_row(SelectionInfo, get_row(session, Selection, selection_id, "selection run"))


def list_selections(session: Session, project_id: int) -> list[SelectionInfo]:
    """A project's selection runs, newest first."""
    rows = session.scalars(select(Selection).where(Selection.project_id == project_id).order_by(Selection.id.desc()))
    return [from_row(SelectionInfo, r) for r in rows]


def selection_items(session: Session, selection_id: int) -> list[SelectionItemInfo]:
    """The picks of a run in rank order."""
    rows = session.scalars(
        select(SelectionItem).where(SelectionItem.selection_id == selection_id).order_by(SelectionItem.rank)
    )
    return [from_row(SelectionItemInfo, r) for r in rows]


def count_items_by_status(session: Session, selection_id: int) -> dict[str, int]:
    """{status: picks} of a run (statuses without picks left out)."""
    query = (select(SelectionItem.status, func.count(SelectionItem.id))
             .where(SelectionItem.selection_id == selection_id).group_by(SelectionItem.status))
    return {str(status): int(n) for status, n in session.execute(query)}


def picks_with_frames(session: Session, selection_id: int, offset: int = 0, limit: int = 24
                      ) -> list[tuple[SelectionItemInfo, FrameInfo, str]]:
    """(pick, frame, video name) of a page of a run's picks in rank order."""
    query = (select(SelectionItem, Frame, Video.name).join(Frame, Frame.id == SelectionItem.frame_id)
             .join(Video, Video.id == Frame.video_id).where(SelectionItem.selection_id == selection_id)
             .order_by(SelectionItem.rank).offset(max(offset, 0)).limit(limit))
    return [(from_row(SelectionItemInfo, item), from_row(FrameInfo, frame), name)
            for item, frame, name in session.execute(query)]


def picked_frame_ids(session: Session, selection_id: int, *, except_status: str | None = None) -> list[int]:
    """Frame ids of a run's picks in rank order, leaving out those with `except_status`."""
    query = select(SelectionItem.frame_id).where(SelectionItem.selection_id == selection_id)
    if except_status is not None:
        query = query.where(SelectionItem.status != except_status)
    return [int(f) for f in session.scalars(query.order_by(SelectionItem.rank))]


def set_item_status(session: Session, selection_id: int, frame_ids: Sequence[int], status: str) -> int:
    """Accept or reject picks of a run; returns how many changed."""
    if status not in ITEM_STATUSES:
        raise ValueError(f"selection item status: {status!r} is not one of {', '.join(ITEM_STATUSES)}")
    result = session.execute(
        update(SelectionItem)
        .where(SelectionItem.selection_id == selection_id, SelectionItem.frame_id.in_(list(frame_ids)))
        .values(status=status)
    )
    return int(result.rowcount)


def selected_frame_ids(session: Session, project_id: int) -> set[int]:
    """Frames already picked (proposed or accepted) by any run of the project."""
    query = (
        select(SelectionItem.frame_id)
        .join(Selection, Selection.id == SelectionItem.selection_id)
        .where(Selection.project_id == project_id, SelectionItem.status != "rejected")
    )
    return set(session.scalars(query))
