"""`segloop demo`: the main job end to end on embedded defaults (grows with each stage of the loop)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from segloop.platform.commands._common import console, ensure_db, friendly_errors, print_table
from segloop.platform.config import SHARED_SAMPLE, load_settings


def default_footage() -> Path:
    """The shared DAVIS sample videos when present, else synthetic footage made once under the data dir."""
    sample = SHARED_SAMPLE / "videos"
    if sample.is_dir():
        return sample
    from segloop.platform.synth import SynthOptions, synthesize

    synth_root = load_settings().data_dir / "synth"
    if not (synth_root / "videos").is_dir():
        console.print(f"shared sample not found at {SHARED_SAMPLE}; generating synthetic footage in {synth_root}")
        synthesize(synth_root, SynthOptions())
    return synth_root / "videos"


@click.command("demo")
@click.option("--footage", type=click.Path(path_type=Path), default=None,
              help="Videos or DAVIS-layout frame folders (default: ../shared/data/davis-sample/videos, else synthetic).")
@click.option("--project", default="demo", show_default=True)
@friendly_errors
def command(footage: Path | None, project: str) -> None:
    """Run the loop as far as segloop has it: set up the DB, ingest footage, summarise."""
    from segloop.platform.commands.ingest import ingest_with_progress, print_report
    from segloop.platform.ingest import IngestOptions
    from segloop.platform.migrate import current_revision
    from segloop.platform.stores import annotations, footage as footage_store, projects

    settings = load_settings()
    engine = ensure_db()
    console.print(f"[bold]1. database[/bold] {engine.url.render_as_string(hide_password=True)} "
                  f"at revision {current_revision(engine)}")
    footage = footage or default_footage()
    console.print(f"[bold]2. ingest[/bold] {footage} into project {project!r}")
    report = ingest_with_progress([footage], IngestOptions(project=project))
    print_report(report)
    from segloop.platform.db import session_scope

    with session_scope(engine) as session:
        info = projects.get_project(session, project)
        videos = footage_store.list_videos(session, info.id)
        rows = [(v.name, v.source_kind, v.frame_count, f"{v.width}x{v.height}", f"{v.fps:.2f}" if v.fps else "",
                 v.codec, len({f.dup_group for f in footage_store.list_frames(session, v.id)}))
                for v in videos]
        total_frames = footage_store.count_frames(session, info.id)
        masks = annotations.count_annotations(session, info.id)
        annotated = annotations.count_annotated_frames(session, info.id)
    print_table(f"project {project}", ["video", "kind", "frames", "size", "fps", "codec", "near-dup groups"], rows)
    print_table("summary", ["what", "value"], [
        ("videos", len(videos)), ("frames", total_frames), ("annotated frames", annotated), ("masks", masks),
        ("ingest seconds (this run)", f"{report.seconds:.1f}"), ("data dir", settings.data_dir.resolve()),
    ])
    console.print("Open the web UI with [bold]make ui[/bold] (or `segloop ui`), then http://127.0.0.1:8501")
    if report.failed:
        sys.exit(1)
