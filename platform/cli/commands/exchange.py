"""`segloop export` and `segloop import`: annotations as DAVIS palette PNGs or COCO RLE JSON."""
from __future__ import annotations

from pathlib import Path

import click
from sqlalchemy.exc import DatabaseError

from segloop.platform.core.console import console
from segloop.platform.core.errors import friendly_errors, user_message
from segloop.platform.core.storage import interrupt_on_sigterm
from segloop.platform.db.migrate import ensure_db


@click.command("export")
@click.option("--project", required=True, help="Project to export.")
@click.option("--format", "fmt", type=click.Choice(["davis", "coco"]), required=True)
@click.argument("out", type=click.Path())
@friendly_errors
def export_cmd(project: str, fmt: str, out: str) -> None:
    """Export a project's newest annotations to OUT (a DAVIS root, or a COCO .json / folder)."""
    from segloop.platform.media.exchange import export_project, overlap_note
    from segloop.platform.services.auth import record_event

    interrupt_on_sigterm()
    engine = ensure_db()
    report = export_project(project, fmt, out)
    try:
        record_event(engine, "export", project, {"format": fmt, "masks": report.masks})
    except DatabaseError as exc:  # a read-only database can still be exported from; say the audit row is missing
        console.print(f"note: this export is not in the audit trail ({user_message(exc)})")
    console.print(f"exported {report.masks} masks on {report.frames} frames of {report.videos} videos to {out}")
    if overlap_note(report):
        console.print(f"note: {overlap_note(report)}")


@click.command("import")
@click.option("--project", required=True, help="Project whose videos the masks belong to.")
@click.option("--format", "fmt", type=click.Choice(["davis", "coco"]), required=True)
@click.option("--author", default="import", show_default=True)
@click.argument("source", type=click.Path(path_type=Path))
@friendly_errors
def import_cmd(project: str, fmt: str, author: str, source: Path) -> None:
    """Import masks from SOURCE (DAVIS root / Annotations folder, or COCO JSON) as new annotation versions."""
    from segloop.platform.media.exchange import import_annotations
    from segloop.platform.services.auth import record_event

    interrupt_on_sigterm()
    engine = ensure_db()
    report = import_annotations(project, fmt, source, author=author)
    record_event(engine, "import", project, {"format": fmt, "masks": report.masks, "unchanged": report.unchanged})
    same = f"; {report.unchanged} identical to the newest version, left as they are" if report.unchanged else ""
    console.print(f"imported {report.masks} masks on {report.frames} frames of {report.videos} videos{same}")


commands = [export_cmd, import_cmd]
