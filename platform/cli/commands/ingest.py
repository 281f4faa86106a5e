"""`segloop ingest`: store videos or DAVIS-layout frame folders as frames in the DB."""
from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
from rich.text import Text

from segloop.platform.cli.options import params_from_options, spec_options
from segloop.platform.core.console import LazyProgress, console, err_console, print_table
from segloop.platform.core.errors import friendly_errors
from segloop.platform.core.storage import interrupt_on_sigterm
from segloop.platform.db.migrate import ensure_db
from segloop.platform.services.params import IngestParams


def ingest_with_progress(paths: list[str | Path], options):
    """Run an ingest with a progress bar per input on the terminal; returns the IngestReport."""
    from segloop.platform.media.ingest import ingest_paths

    ensure_db()
    with LazyProgress(
        TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console, transient=False,
    ) as progress:
        tasks: dict[str, int] = {}

        def on_progress(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=total)
            progress.update(tasks[name], completed=done)

        return ingest_paths(paths, options, progress=on_progress)


def print_report(report) -> None:
    """The per-input table, errors, and the totals line."""
    rows = [(o.status, Path(o.source).name, o.video_id, o.frames, o.annotations, o.message) for o in report.outcomes]
    print_table("ingest", ["status", "input", "video", "frames", "masks", "message"], rows)
    for outcome in report.failed:
        err_console.print(Text.assemble(("error:", "red"), f" {outcome.message}"), soft_wrap=True)
    ingested = [o for o in report.outcomes if o.status == "ingested"]
    rate = report.frames / report.seconds if report.seconds > 0 else 0.0
    console.print(
        f"videos ingested: {len(ingested)}, skipped: {sum(o.status == 'skipped' for o in report.outcomes)}, "
        f"failed: {len(report.failed)}; frames: {report.frames}, masks: {report.annotations}; "
        f"{report.seconds:.1f} s, {rate:.1f} frames/s"
    )


@click.command("ingest")
@click.argument("paths", nargs=-1, required=True)
@spec_options(IngestParams, exclude=("paths",))
@friendly_errors
def command(paths: tuple[str, ...], **values) -> None:
    """Ingest video files (mp4, mov, mkv, avi, webm), folders of them, or DAVIS-layout frame folders."""
    from segloop.platform.media.ingest import IngestOptions

    interrupt_on_sigterm()
    params = params_from_options(IngestParams, values, where="ingest", paths=list(paths))
    options = IngestOptions(project=params.project, fps=params.fps, max_side=params.max_side,
                            masks=Path(params.masks) if params.masks else None)
    report = ingest_with_progress(list(paths), options)
    print_report(report)
    if report.failed:
        sys.exit(1)
