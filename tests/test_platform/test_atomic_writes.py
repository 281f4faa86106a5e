"""Every multi-row write is all-or-nothing, on SQLite and PostgreSQL: a failure injected after some rows
(a real database trigger that refuses the N-th insert) leaves every table exactly as it was.

Writes covered: DAVIS import, COCO import, ingest with masks, selection runs, review actions (a reviewer's
save on the Label page, and accept/reject on the Review page).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError

from segloop.platform.db.engine import session_scope
from segloop.platform.db.orm import Annotation, Base
from segloop.platform.db.stores import annotations as annotation_store
from segloop.platform.db.stores import footage, projects
from segloop.platform.db.stores.annotations import ConflictError
from segloop.platform.media.exchange import export_project, import_annotations
from segloop.platform.media.ingest import IngestOptions, ingest_paths

INJECTED = "injected failure"


def table_counts(engine: Engine) -> dict[str, int]:
    """{table: rows} for every table of the schema."""
    with session_scope(engine) as session:
        return {t.name: int(session.scalar(select(func.count()).select_from(t))) for t in Base.metadata.sorted_tables}


def annotation_state(engine: Engine) -> list[tuple]:
    """Every annotation row's identity, version and status (what a review changes)."""
    with session_scope(engine) as session:
        rows = session.execute(select(Annotation.id, Annotation.frame_id, Annotation.object_id, Annotation.version,
                                      Annotation.status).order_by(Annotation.id))
        return [tuple(r) for r in rows]


@contextmanager
def fail_insert_after(engine: Engine, table: str, rows: int) -> Iterator[None]:
    """A trigger that refuses any insert into `table` once `rows` more rows than now are in it."""
    with engine.begin() as connection:
        limit = int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar()) + rows
        if engine.dialect.name == "sqlite":
            connection.execute(text(
                f"CREATE TRIGGER inject_failure BEFORE INSERT ON {table} "
                f"WHEN (SELECT count(*) FROM {table}) >= {limit} BEGIN SELECT RAISE(ABORT, '{INJECTED}'); END"))
        else:
            connection.execute(text(
                f"CREATE FUNCTION inject_failure() RETURNS trigger AS $$ BEGIN "
                f"IF (SELECT count(*) FROM {table}) >= {limit} THEN RAISE EXCEPTION '{INJECTED}'; END IF; "
                f"RETURN NEW; END $$ LANGUAGE plpgsql"))
            connection.execute(text(f"CREATE TRIGGER inject_failure BEFORE INSERT ON {table} "
                                    f"FOR EACH ROW EXECUTE FUNCTION inject_failure()"))
    try:
        yield
    finally:
        with engine.begin() as connection:
            connection.execute(text("DROP TRIGGER inject_failure" if engine.dialect.name == "sqlite"
                                    else f"DROP TRIGGER inject_failure ON {table}"))
            if engine.dialect.name != "sqlite":
                connection.execute(text("DROP FUNCTION inject_failure()"))


@pytest.fixture
def two_projects(synth_root: Path, settings, engine) -> Path:
    """'src' ingested with its DAVIS masks, 'dst' with the same videos unlabelled; returns a DAVIS export of 'src'."""
    assert not ingest_paths([synth_root], IngestOptions(project="src"), settings).failed
    assert not ingest_paths([synth_root / "videos"], IngestOptions(project="dst"), settings).failed
    with session_scope(engine) as session:  # the class exists: the import's first statements only read
        projects.get_or_create_label_class(session, projects.get_project(session, "dst").id, "object")
    return synth_root


@pytest.mark.parametrize("fmt", ["davis", "coco"])
def test_import_failing_midway_changes_nothing(fmt: str, two_projects, settings, engine, tmp_path: Path) -> None:
    """An import whose 6th annotation insert fails leaves no annotation behind."""
    out = tmp_path / f"export-{fmt}"
    exported = export_project("src", fmt, out, settings)
    assert exported.masks > 6
    before = table_counts(engine)
    with fail_insert_after(engine, "annotations", 5), pytest.raises((ConflictError, DBAPIError)):
        import_annotations("dst", fmt, out, settings)
    assert table_counts(engine) == before
    assert import_annotations("dst", fmt, out, settings).masks == exported.masks  # and it works without the fault


def test_ingest_with_masks_failing_midway_changes_nothing(synth_root: Path, settings, engine) -> None:
    """An ingest whose masks fail after 5 rows stores no project, video, frame or mask, and no frame folder."""
    before = table_counts(engine)
    with fail_insert_after(engine, "annotations", 5):
        report = ingest_paths([synth_root / "JPEGImages" / "480p" / "synth-007-000"],
                              IngestOptions(project="fresh", masks=synth_root / "Annotations" / "480p"), settings)
    assert [o.status for o in report.outcomes] == ["failed"]
    assert INJECTED in report.outcomes[0].message
    assert table_counts(engine) == before
    assert not any(settings.frames_dir.iterdir())


def test_selection_run_failing_midway_changes_nothing(embedded, settings, engine) -> None:
    """A selection run whose 3rd pick fails to insert stores no run and no pick."""
    from segloop.platform.services.selection import run_selection
    from segloop.selectors.constraints import Constraints

    before = table_counts(engine)
    with fail_insert_after(engine, "selection_items", 2), pytest.raises(DBAPIError, match=INJECTED):
        run_selection("ui", "uniform", Constraints(budget=6), settings=settings)
    assert table_counts(engine) == before
    assert len(run_selection("ui", "uniform", Constraints(budget=6), settings=settings).items) == 6


def test_review_failing_midway_changes_nothing(davis_video, settings, engine) -> None:
    """A review that moves two objects to 'reviewed' and stores a new version of a third, failing on that
    insert, leaves the first two 'submitted'."""
    from segloop.platform.services import labeling

    with session_scope(engine) as session:
        frame = footage.list_frames(session, davis_video.id, limit=1)[0]
        class_id = projects.get_or_create_label_class(session, davis_video.project_id, "object").id
    loaded = labeling.load_frame_labels(engine, frame.id)
    labels = loaded.labels.copy()
    if len(loaded.versions) < 2:  # make sure there are objects to re-status before the changed one
        labels[:4, :4] = 7
        with session_scope(engine) as session:
            annotation_store.save_annotation(session, frame.id, 7, labels == 7, "manual", status="submitted",
                                             class_id=class_id)
        loaded = labeling.load_frame_labels(engine, frame.id)
    changed = max(loaded.versions) + 1
    labels = loaded.labels.copy()
    labels[-3:, -3:] = changed
    before, states = table_counts(engine), annotation_state(engine)
    assert sum(1 for s in loaded.statuses.values() if s != "reviewed") >= 2
    with fail_insert_after(engine, "annotations", 0), pytest.raises((ConflictError, DBAPIError)):
        labeling.save_frame_labels(engine, frame.id, labels, loaded.versions, status="reviewed")
    assert table_counts(engine) == before
    assert annotation_state(engine) == states
    outcome = labeling.save_frame_labels(engine, frame.id, labels, loaded.versions, status="reviewed")
    assert changed in outcome.saved and len(outcome.restatused) >= 2


def test_review_decision_failing_midway_changes_nothing(davis_video, settings, engine) -> None:
    """Rejecting a submitted frame moves its masks back to draft, then records the decision; a failure on that
    record leaves the masks submitted, with no review event and no audit row."""
    from segloop.platform.services import labeling, review

    with session_scope(engine) as session:
        frame = footage.list_frames(session, davis_video.id, limit=1)[0]
    loaded = labeling.load_frame_labels(engine, frame.id)
    labels = loaded.labels.copy()
    labels[:4, :4] = 9
    labeling.save_frame_labels(engine, frame.id, labels, loaded.versions, status="submitted")
    before, states = table_counts(engine), annotation_state(engine)
    with fail_insert_after(engine, "review_events", 0), pytest.raises(DBAPIError):
        review.reject(engine, frame.id, "the left edge is off")
    assert table_counts(engine) == before
    assert annotation_state(engine) == states
    assert review.reject(engine, frame.id, "the left edge is off").kind == "rejected"
    assert set(labeling.load_frame_labels(engine, frame.id).statuses.values()) == {"draft"}


def test_savepoints_roll_back_with_the_transaction(engine) -> None:
    """The engine's transactions are real on both databases: rows written inside a released SAVEPOINT
    disappear when the enclosing transaction rolls back (pysqlite's default would have committed them)."""
    with pytest.raises(RuntimeError):
        with session_scope(engine) as session:
            for name in ("a", "b", "c"):
                projects.get_or_create_project(session, name)
                with session.begin_nested():
                    projects.get_or_create_label_class(session, projects.get_project(session, name).id, "x")
            raise RuntimeError("stop")
    assert set(table_counts(engine).values()) == {0}
