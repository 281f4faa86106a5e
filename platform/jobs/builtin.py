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


@dataclass
class PropagateJobParams:
    """Parameters of a propagate job (same meaning as `segloop vos propagate --video`)."""

    video_ids: list[int] = field(default_factory=list)
    method: str = "backbone"
    backbone: str = "vit_small_patch16_224"
    checkpoint: str | None = None
    keyframes: str | None = None
    short_side: int = 480


@job_kind("propagate", PropagateJobParams,
          "Propagate a video's human masks to its other frames (drafts, uncertainty, J&F on held-out masks).")
def run_propagate(params: PropagateJobParams, ctx: JobContext) -> dict[str, Any]:
    """Propagate each video in turn; results per video."""
    from segloop.platform import vos
    from segloop.platform.propagation import propagate_video

    if not params.video_ids:
        raise vos.PropagationError("propagate params: field 'video_ids' must list at least one video id")
    config = vos.PropagationConfig(short_side=params.short_side)
    featurizer = vos.make_featurizer(params.method, params.backbone, params.checkpoint, config)
    results = {}
    for position, video_id in enumerate(params.video_ids):
        def on_frame(done: int, total: int, position: int = position) -> None:
            ctx.progress((position + done / total) / len(params.video_ids), f"video {video_id}: frame {done}/{total}")

        outcome = propagate_video(video_id, featurizer, config, params.keyframes, job_id=ctx.job_id,
                                  on_frame=on_frame)
        ctx.log(f"video {video_id}: {outcome.drafts} drafts, keyframes {outcome.keyframes}, scores {outcome.scores}")
        results[str(video_id)] = {"drafts": outcome.drafts, "keyframes": outcome.keyframes, "scores": outcome.scores}
    return results
