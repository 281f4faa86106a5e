"""Terminal input and output shared by the CLI and the benchmarks: output path options, consoles, tables, progress
bars."""
from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table


class OutputPath(click.Path):
    """An output path option checked when the command line is read, not after the work: it is not a folder (for a
    file) or a file (for a folder), and the nearest existing folder above it takes new files."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """The path, or a usage error naming the option and why nothing could be written there."""
        path = Path(super().convert(value, param, ctx))
        above = next((p for p in [path, *path.parents] if p.exists()), Path("."))
        if above != path and not above.is_dir():
            self.fail(f"{path}: {above} is a file, not a folder", param, ctx)
        folder = above if above.is_dir() else above.parent
        try:
            fd, probe = tempfile.mkstemp(prefix=".segloop-probe-", dir=folder)
        except OSError as exc:
            self.fail(f"{path}: cannot write in {folder} ({(exc.strerror or str(exc)).lower()})", param, ctx)
        os.close(fd)
        os.unlink(probe)
        return path


OUT_DIR = OutputPath(file_okay=False, path_type=Path)  # an output folder option: new, or an existing folder
OUT_FILE = OutputPath(dir_okay=False, path_type=Path)  # an output file option (JSON): new, or an existing file


class FiniteFloatRange(click.FloatRange):
    """A number option that must be finite and within its bounds (click's FloatRange lets nan and inf through)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """The number, or a usage error naming the option when it is nan or infinite."""
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number

# Text is printed as given: a name holding "[x]" (rich markup) must not lose it; style goes in `style=` or Text.
console = Console(markup=False)
err_console = Console(stderr=True, markup=False)


class LazyProgress(Progress):
    """A rich Progress that starts drawing at its first update or advance, not on entering its `with` block: a
    command refused before any work shows no empty bar above its error."""

    def __enter__(self) -> LazyProgress:
        return self

    def stop(self) -> None:
        """Stop drawing, if it ever started (rich's stop would print a blank line otherwise)."""
        if self.live.is_started:
            super().stop()

    def update(self, *args: Any, **kwargs: Any) -> None:
        """Draw from now on, then update the task."""
        if not self.live.is_started:
            self.start()
        super().update(*args, **kwargs)

    def advance(self, *args: Any, **kwargs: Any) -> None:
        """Draw from now on, then advance the task."""
        if not self.live.is_started:
            self.start()
        super().advance(*args, **kwargs)


@contextmanager
def progress_bar(label: str):
    """A rich progress bar on stderr, drawn from the first report on; yields a (fraction, message) callback for
    long services."""
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn

    with LazyProgress(TextColumn(label, style="bold", markup=False), BarColumn(),
                      TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
                      TextColumn("{task.description}", markup=False), console=err_console) as bar:
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
