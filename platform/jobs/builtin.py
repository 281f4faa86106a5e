"""Built-in job kinds of the foundation: ingest."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segloop.platform.jobs.registry import JobContext, job_kind


@dataclass
class IngestJobParams:
    """Parameters of an ingest job (same meaning as `segloop ingest`)."""

    paths: list[str] = field(default_factory=list)
    project: str = "default"
    fps: float | None = None
    max_side: int | None = None
    masks: str | None = None


@job_kind("ingest", IngestJobParams, "Ingest videos or DAVIS-layout frame folders into a project.")
def run_ingest(params: IngestJobParams, ctx: JobContext) -> dict[str, Any]:
    """Ingest the given paths; fails (listing every bad input) if any input failed."""
    from segloop.platform.ingest import IngestError, IngestOptions, ingest_paths

    if not params.paths:
        raise IngestError("ingest params: field 'paths' must list at least one file or folder")
    options = IngestOptions(project=params.project, fps=params.fps, max_side=params.max_side,
                            masks=Path(params.masks) if params.masks else None)
    done: dict[str, float] = {}

    def on_progress(name: str, frames_done: int, frames_total: int) -> None:
        done[name] = frames_done / max(frames_total, 1)
        ctx.progress(sum(done.values()) / max(len(params.paths), len(done)), f"{name}: {frames_done}/{frames_total} frames")

    report = ingest_paths([Path(p) for p in params.paths], options, progress=on_progress)
    for outcome in report.outcomes:
        ctx.log(f"{outcome.status}: {outcome.source} {outcome.message}")
    result = {
        "videos": [o.video_id for o in report.outcomes if o.video_id is not None],
        "frames": report.frames,
        "annotations": report.annotations,
        "seconds": round(report.seconds, 3),
        "failed": [o.message for o in report.failed],
    }
    if report.failed:
        raise IngestError("; ".join(o.message for o in report.failed))
    return result
