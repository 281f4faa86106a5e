"""`segloop db upgrade|downgrade|current`: schema migrations."""
from __future__ import annotations

import click

from segloop.platform.core.console import console
from segloop.platform.core.errors import friendly_errors
from segloop.platform.core.settings import load_settings
from segloop.platform.db.engine import get_engine


@click.group("db")
def command() -> None:
    """Database schema (Alembic migrations)."""


@command.command("upgrade")
@click.argument("revision", default="head")
@friendly_errors
def upgrade_cmd(revision: str) -> None:
    """Migrate the schema up to REVISION (default: head)."""
    from segloop.platform.db.migrate import current_revision, upgrade

    engine = get_engine(load_settings())
    upgrade(engine, revision)
    console.print(f"database {engine.url.render_as_string(hide_password=True)} at revision {current_revision(engine)}")


@command.command("downgrade", context_settings={"ignore_unknown_options": True})  # `downgrade -1` is a revision
@click.argument("revision")
@friendly_errors
def downgrade_cmd(revision: str) -> None:
    """Migrate the schema down to REVISION ('base' removes every table; -N steps back N revisions)."""
    from segloop.platform.db.migrate import current_revision, downgrade

    engine = get_engine(load_settings())
    downgrade(engine, revision)
    console.print(f"database at revision {current_revision(engine) or 'base'}")


@command.command("current")
@friendly_errors
def current_cmd() -> None:
    """Print the database's revision and the newest one shipped."""
    from segloop.platform.db.migrate import (
        MigrationError,
        alembic_config,
        current_revision,
        head_revision,
        refuse_unknown_revision,
    )

    engine = get_engine(load_settings())
    current = current_revision(engine)
    head = head_revision(engine)
    try:
        refuse_unknown_revision(alembic_config(engine), current)
        state = "up to date" if current == head else "behind: run `segloop db upgrade`"
    except MigrationError:
        state = "ahead: a newer segloop migrated this database; use that one"
    console.print(f"current: {current or 'base (empty)'}  head: {head}  ({state})")
