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
    """A rich progress bar on stderr, drawn from the first report on (so a refusal before any work shows no bar);
    yields a (fraction, message) callback for long services."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn(f"[bold]{label}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                   TimeElapsedColumn(), TextColumn("{task.description}"), console=err_console)
    task = None

    def report(fraction: float, message: str = "") -> None:
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task("", total=1.0)
        bar.update(task, completed=fraction, description=message)

    try:
        yield report
    finally:
        if task is not None:
            bar.stop()


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print rows as a rich table."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)
