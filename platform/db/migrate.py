"""Schema migrations through Alembic: upgrade, downgrade, current, drift check."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.orm import Session

import segloop.migrations
from segloop.platform.db.engine import get_engine, session_scope
from segloop.platform.db.orm import Base


def alembic_config(engine: Engine) -> Config:
    """An Alembic config pointing at the shipped migrations and the given engine's URL."""
    config = Config()
    config.set_main_option("script_location", str(Path(segloop.migrations.__file__).parent))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return config


class MigrationError(ValueError):
    """A migration target that does not exist or cannot be reached; the message names it and the known revisions."""


def _run(engine: Engine, action, revision: str) -> None:
    """Run an Alembic command to `revision` on one connection of `engine`, in one transaction."""
    from alembic.util.exc import CommandError

    config = alembic_config(engine)
    if not revision.strip():
        raise MigrationError(f"revision: give one ({_known_revisions(config)})")
    with engine.begin() as connection:
        _hold_migration_lock(connection)
        refuse_unknown_revision(config, MigrationContext.configure(connection).get_current_revision())
        config.attributes["connection"] = connection
        try:
            action(config, revision)
        except CommandError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "cannot migrate there"
            raise MigrationError(f"revision {revision!r}: {reason} ({_known_revisions(config)})") from None


def _hold_migration_lock(connection) -> None:
    """Migrate one process at a time (PostgreSQL: an advisory lock to the transaction's end; SQLite: its write
    transaction already is one)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")


def refuse_unknown_revision(config: Config, current: str | None) -> None:
    """MigrationError when the database is at a revision this segloop does not ship (a newer segloop migrated it)."""
    scripts = ScriptDirectory.from_config(config)
    if current is not None and current not in {script.revision for script in scripts.walk_revisions()}:
        raise MigrationError(f"the database is at schema revision {current}, which this segloop does not know (its "
                             f"newest is {scripts.get_current_head()}): a newer segloop migrated it; use that one")


def _known_revisions(config: Config) -> str:
    """'known: base, 0001, ..., head' for messages."""
    shipped = sorted(script.revision for script in ScriptDirectory.from_config(config).walk_revisions())
    return f"known: base, {', '.join(shipped)}, head, or +N/-N steps"


def upgrade(engine: Engine | None = None, revision: str = "head") -> None:
    """Migrate the schema up to `revision`."""
    _run(engine or get_engine(), command.upgrade, revision)


def downgrade(engine: Engine | None = None, revision: str = "base") -> None:
    """Migrate the schema down to `revision`."""
    _run(engine or get_engine(), command.downgrade, revision)


def current_revision(engine: Engine | None = None) -> str | None:
    """The revision the database is at (None for an empty database)."""
    with (engine or get_engine()).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(engine: Engine | None = None) -> str | None:
    """The newest revision shipped with this version of segloop."""
    return ScriptDirectory.from_config(alembic_config(engine or get_engine())).get_current_head()


def schema_drift(engine: Engine | None = None) -> list:
    """Differences between the migrated database and the ORM models (empty when in sync)."""
    with (engine or get_engine()).connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


MIGRATION_LOCK_KEY = 0x5E6100  # PostgreSQL advisory lock id held while segloop migrates


def ensure_schema(engine: Engine | None = None) -> None:
    """Upgrade to head when the database is behind (used by commands that need the schema).

    Processes starting at once migrate one at a time: the upgrade runs in a transaction holding the
    database's write lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock), and the revision is
    read again under that lock, so the second process finds the schema done instead of creating it twice.
    """
    engine = engine or get_engine()
    head = head_revision(engine)
    if current_revision(engine) == head:
        return
    config = alembic_config(engine)
    with engine.begin() as connection:
        _hold_migration_lock(connection)
        current = MigrationContext.configure(connection).get_current_revision()
        if current == head:
            return
        refuse_unknown_revision(config, current)
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def ensure_db() -> Engine:
    """The configured engine, with the schema migrated to the newest revision."""
    from segloop.platform.core.settings import load_settings

    engine = get_engine(load_settings())
    ensure_schema(engine)
    return engine


@contextmanager
def db_session() -> Iterator[Session]:
    """A transaction on the configured database, migrated to the newest schema first."""
    with session_scope(ensure_db()) as session:
        yield session
