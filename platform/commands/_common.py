"""Helpers shared by the CLI command modules: DB access, clear errors, tables."""
from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from segloop.platform.config import load_settings
from segloop.platform.db import get_engine, session_scope
from segloop.platform.stores import NotFoundError

console = Console()
err_console = Console(stderr=True)


def friendly_errors(func: Callable) -> Callable:
    """Turn expected failures (bad input, missing rows, unreachable DB) into a message and exit 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (ValueError, NotFoundError, FileNotFoundError) as exc:
            raise click.ClickException(str(exc)) from None
        except OperationalError as exc:
            raise click.ClickException(f"database error: {str(exc.orig).splitlines()[0]}") from None

    return wrapper


def ensure_db():
    """The configured engine, with the schema migrated to the newest revision."""
    from segloop.platform.migrate import ensure_schema

    engine = get_engine(load_settings())
    ensure_schema(engine)
    return engine


@contextmanager
def db_session() -> Iterator[Session]:
    """A transaction on the configured database, migrated to the newest schema first."""
    with session_scope(ensure_db()) as session:
        yield session


@contextmanager
def progress_bar(label: str):
    """A rich progress bar on stderr; yields a (fraction, message) callback for long services."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn(f"[bold]{label}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn(), TextColumn("{task.description}"), console=err_console) as bar:
        task = bar.add_task("", total=1.0)
        yield lambda fraction, message="": bar.update(task, completed=fraction, description=message)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print rows as a rich table."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)


def write_json(path: Path, payload: Any) -> None:
    """Write JSON atomically (parents created)."""
    from segloop.platform.storage import atomic_write_bytes

    atomic_write_bytes(Path(path), (json.dumps(payload, indent=2, default=str) + "\n").encode())
