"""Terminal output shared by the CLI and the benchmarks: consoles, tables, progress bars."""
from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


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
