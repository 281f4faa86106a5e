"""Schema only through Alembic: up from empty, down to base, up again; no drift from the ORM models."""
from __future__ import annotations

import pytest
from sqlalchemy import inspect

from segloop.platform.db.migrate import current_revision, downgrade, head_revision, schema_drift, upgrade

TABLES = {"projects", "videos", "frames", "annotations", "label_classes", "embedding_sets", "selections",
          "selection_items", "jobs", "checkpoints", "metrics", "frame_scores", "users", "project_grants",
          "user_sessions", "audit_events", "review_events", "frame_tags", "frame_tag_items"}


def _tables(engine) -> set[str]:
    """Tables in the database, Alembic's bookkeeping table left out."""
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_up_down_up_and_no_drift(settings) -> None:
    """Every table is created by migrations and removed by downgrading to base."""
    from segloop.platform.db.engine import get_engine

    engine = get_engine(settings)
    assert current_revision(engine) is None and _tables(engine) == set()
    upgrade(engine)
    assert current_revision(engine) == head_revision(engine)
    assert _tables(engine) == TABLES
    assert schema_drift(engine) == []
    downgrade(engine, "base")
    assert current_revision(engine) is None and _tables(engine) == set()
    upgrade(engine)
    assert _tables(engine) == TABLES
    assert schema_drift(engine) == []


def test_sqlite_pragmas(engine) -> None:
    """WAL journal, foreign keys and a busy timeout on every connection."""
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite pragmas only")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000


def test_db_cli_commands(cli) -> None:
    """`segloop db upgrade|current|downgrade` report the revision."""
    assert "at revision" in cli("db", "upgrade").output
    assert "up to date" in cli("db", "current").output
    stepped = cli("db", "downgrade", "-1")  # a relative step back, not an unknown option
    assert stepped.exit_code == 0 and "at revision 0" in stepped.output, stepped.output
    assert "behind" in cli("db", "current").output
    assert "at revision" in cli("db", "upgrade").output
    assert "at revision base" in cli("db", "downgrade", "base").output
    assert "behind" in cli("db", "current").output


@pytest.mark.parametrize(("args", "message"), [
    (("upgrade", "nope"), "revision 'nope': Can't locate revision identified by 'nope' (known: base, 0001"),
    (("downgrade", "0999"), "revision '0999': Can't locate revision"),
    (("upgrade", "+9"), "revision '+9': Relative revision +9 didn't produce 9 migrations"),
    (("downgrade", " "), "revision: give one (known: base, 0001"),
])
def test_db_cli_names_a_revision_it_cannot_reach(args: tuple, message: str, cli, engine) -> None:
    """An unknown, unreachable or empty revision is one line naming it and listing the shipped revisions, exit 1, and
    the schema stays where it was (before: an Alembic CommandError or AssertionError traceback)."""
    before = current_revision(engine)
    result = cli("db", *args)
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output, result.output
    assert current_revision(engine) == before


def test_a_database_migrated_by_a_newer_segloop_is_named_not_a_traceback(cli, engine) -> None:
    """A schema revision this segloop does not ship (a newer one migrated the database): `db current` said
    "behind", every other command was an Alembic traceback; now each says the database is ahead, exit 1, and nothing
    is changed."""
    from sqlalchemy import text

    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    assert "ahead: a newer segloop migrated this database" in cli("db", "current").output
    for args in (("tags", "list", "--project", "p"), ("db", "upgrade"), ("db", "downgrade", "-1")):
        result = cli(*args)
        assert result.exit_code == 1 and "schema revision 0099, which this segloop does not know" in result.output
        assert "Traceback" not in result.output
    assert current_revision(engine) == "0099"


def test_upgrades_started_at_once_migrate_once(settings) -> None:
    """Two `db upgrade` at once on an empty PostgreSQL database: one failed with a duplicate-type traceback (only
    the automatic upgrade took the migration lock)."""
    import threading

    from segloop.platform.db.engine import get_engine
    from segloop.platform.db.migrate import head_revision, upgrade

    engine, barrier, failures = get_engine(settings), threading.Barrier(3), []

    def run() -> None:
        barrier.wait()
        try:
            upgrade(engine)
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures and current_revision(engine) == head_revision(engine)
