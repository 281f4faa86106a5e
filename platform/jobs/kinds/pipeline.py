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
    from segloop.platform.media.ingest import IngestError, IngestOptions, ingest_paths

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
    from segloop.platform.services.propagation import propagate_video
    from segloop.platform.vos import propagation as vos

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


@dataclass
class PretrainJobParams:
    """Parameters of a pretrain job on a project's frames (`config` holds nested overrides, as YAML would)."""

    project: str = "default"
    config: dict = field(default_factory=dict)
    preset: str | None = "cpu_10min_vit_tiny.yaml"
    max_minutes: float | None = None
    steps: int | None = None


@job_kind("pretrain", PretrainJobParams,
          "Self-supervised pretraining on a project's frames; a retry resumes from the last checkpoint.")
def run_pretrain(params: PretrainJobParams, ctx: JobContext) -> dict[str, Any]:
    """Pretrain into runs/pretrain/<project>/job-<id> and register the teacher backbone."""
    from importlib import resources

    from segloop.platform.core.settings import load_settings
    from segloop.platform.services.pretraining import pretrain_project
    from segloop.pretrain.config import load_config

    overrides = {section: dict(values) for section, values in params.config.items()}
    run = overrides.setdefault("run", {})
    if params.max_minutes is not None:
        run["max_minutes"] = params.max_minutes
    if params.steps is not None:
        run["steps"] = params.steps
    preset = Path(str(resources.files("segloop.pretrain") / "configs" / params.preset)) if params.preset else None
    config = load_config(preset, overrides)
    out_dir = load_settings().runs_dir / "pretrain" / params.project / f"job-{ctx.job_id}"
    if (out_dir / "checkpoint.pth").is_file():
        ctx.log(f"resuming from {out_dir / 'checkpoint.pth'}")
    result, checkpoint = pretrain_project(params.project, config, out_dir, resume=True, job_id=ctx.job_id,
                                          progress=ctx.progress)
    return {"checkpoint_id": checkpoint.id, "teacher": str(result.teacher_path), "step": result.step,
            "last_loss": result.last_loss, "stopped_by_time": result.stopped_by_time}


@dataclass
class EmbedJobParams:
    """Parameters of an embed job (same meaning as `segloop embed --project`)."""

    project: str = "default"
    checkpoint_id: int | None = None
    backbone: str = "vit_small_patch16_224"
    img_size: int = 224
    batch_size: int = 32
    vector: str = "cls"


@job_kind("embed", EmbedJobParams, "Embed every frame of a project with a checkpoint (or a random-init backbone).")
def run_embed(params: EmbedJobParams, ctx: JobContext) -> dict[str, Any]:
    """Embed and register an embedding set."""
    from segloop.platform.db.engine import session_scope
    from segloop.platform.db.stores import artifacts
    from segloop.platform.services.embedding import embed_project

    backbone, weights = params.backbone, None
    if params.checkpoint_id is not None:
        with session_scope() as session:
            checkpoint = artifacts.get_checkpoint(session, params.checkpoint_id)
        backbone, weights = checkpoint.backbone, checkpoint.path
    embedding_set = embed_project(params.project, backbone, weights, params.img_size, params.batch_size,
                                  params.vector, job_id=ctx.job_id, checkpoint_id=params.checkpoint_id,
                                  progress=ctx.progress)
    return {"embedding_set_id": embedding_set.id, "count": embedding_set.count, "dim": embedding_set.dim}


@dataclass
class SelectJobParams:
    """Parameters of a select job (same meaning as `segloop select`)."""

    project: str = "default"
    strategy: str = "kcenter"
    budget: int = 10
    params: dict = field(default_factory=dict)
    embedding_set_id: int | None = None
    min_gap_frames: int = 0
    max_per_video: int | None = None
    videos: list[int] = field(default_factory=list)
    one_per_duplicate_group: bool = True


@job_kind("select", SelectJobParams, "Pick frames to label with a strategy and store the selection run.")
def run_select(params: SelectJobParams, ctx: JobContext) -> dict[str, Any]:
    """Run the strategy on the project's pool and persist the picks."""
    from segloop.platform.services.selection import run_selection
    from segloop.selectors.constraints import Constraints

    constraints = Constraints(budget=params.budget, min_gap_frames=params.min_gap_frames,
                              max_per_video=params.max_per_video, videos=tuple(params.videos) or None,
                              one_per_duplicate_group=params.one_per_duplicate_group)
    ctx.progress(0.1, f"running {params.strategy}")
    run = run_selection(params.project, params.strategy, constraints, params.params, params.embedding_set_id,
                        job_id=ctx.job_id)
    return {"selection_id": run.selection.id, "picks": [i.frame_id for i in run.items]}
