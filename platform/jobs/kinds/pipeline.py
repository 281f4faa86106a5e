"""Job kinds of the pipeline: ingest, propagate, pretrain, embed and select."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from segloop.platform.jobs.registry import JobContext, job_kind
from segloop.platform.services.params import EmbedParams, IngestParams, PretrainParams, PropagateParams, SelectParams


@job_kind("ingest")
def run_ingest(params: IngestParams, ctx: JobContext) -> dict[str, Any]:
    """Ingest the given paths; fails (listing every bad input) if any input failed."""
    from segloop.platform.media.ingest import IngestError, IngestOptions, ingest_paths
    from segloop.platform.services.uploads import without_upload_folders

    options = IngestOptions(project=params.project, fps=params.fps, max_side=params.max_side,
                            masks=Path(params.masks) if params.masks else None)
    done: dict[str, float] = {}

    def on_progress(name: str, frames_done: int, frames_total: int) -> None:
        done[name] = frames_done / max(frames_total, 1)
        ctx.progress(sum(done.values()) / max(len(params.paths), len(done)),
                     f"{name}: {frames_done}/{frames_total} frames")

    report = ingest_paths([str(p) for p in params.paths], options, progress=on_progress)
    for outcome in report.outcomes:
        ctx.log(f"{outcome.status}: {outcome.source} {outcome.message}")
    failed = [without_upload_folders(o.message) for o in report.failed]
    result = {
        "videos": [o.video_id for o in report.outcomes if o.video_id is not None],
        "frames": report.frames,
        "annotations": report.annotations,
        "seconds": round(report.seconds, 3),
        "skipped": [f"{without_upload_folders(o.source)}: {o.message}" for o in report.outcomes
                    if o.status == "skipped"],
        "failed": failed,
    }
    if report.failed:
        raise IngestError("; ".join(failed))
    return result


@job_kind("propagate")
def run_propagate(params: PropagateParams, ctx: JobContext) -> dict[str, Any]:
    """Propagate each video in turn; results per video."""
    from segloop.platform.services.models import propagator_for, requested_propagator
    from segloop.platform.services.propagation import propagate_video
    from segloop.platform.vos import propagation as vos

    config = vos.PropagationConfig(short_side=params.short_side)
    fixed = requested_propagator(params.method, params.backbone, params.checkpoint, config)
    results = {}
    for position, video_id in enumerate(params.video_ids):
        featurizer, choice = propagator_for(video_id, config, fixed, job_id=ctx.job_id)
        if choice is not None:
            ctx.log(f"video {video_id}: propagator {choice.propagator} ({choice.reason}; scores {choice.scores})")
        def on_frame(done: int, total: int, position: int = position, video_id: int = video_id) -> None:
            ctx.progress((position + done / total) / len(params.video_ids), f"video {video_id}: frame {done}/{total}")

        outcome = propagate_video(video_id, featurizer, config, params.keyframes, job_id=ctx.job_id,
                                  on_frame=on_frame)
        ctx.log(f"video {video_id}: {outcome.drafts} drafts, keyframes {outcome.keyframes}, scores {outcome.scores}")
        results[str(video_id)] = {"drafts": outcome.drafts, "keyframes": outcome.keyframes, "scores": outcome.scores,
                                  "propagator": featurizer.name if featurizer is not vos.COPY else vos.COPY}
    return results


@job_kind("pretrain")
def run_pretrain(params: PretrainParams, ctx: JobContext) -> dict[str, Any]:
    """Pretrain into runs/pretrain/<project>/job-<id> and register the teacher backbone."""
    from segloop.platform.core.settings import load_settings
    from segloop.platform.services.pretraining import pretrain_project
    from segloop.platform.services.runs import pretrain_config

    out_dir = load_settings().runs_dir / "pretrain" / params.project / f"job-{ctx.job_id}"
    if (out_dir / "checkpoint.pth").is_file():
        ctx.log(f"resuming from {out_dir / 'checkpoint.pth'}")
    result, checkpoint = pretrain_project(params.project, pretrain_config(params), out_dir, resume=True,
                                          job_id=ctx.job_id, progress=ctx.progress)
    return {"checkpoint_id": checkpoint.id, "teacher": str(result.teacher_path), "step": result.step,
            "last_loss": result.last_loss, "stopped_by_time": result.stopped_by_time,
            "distil_steps": result.distil_steps}


@job_kind("embed")
def run_embed(params: EmbedParams, ctx: JobContext) -> dict[str, Any]:
    """Embed and register an embedding set (the checkpoint given, else the project's newest pretrained encoder)."""
    from segloop.platform.services.embedding import embed_project

    embedding_set = embed_project(params.project, params.backbone, None, params.img_size, params.batch_size,
                                  params.vector, job_id=ctx.job_id, checkpoint_id=params.checkpoint_id,
                                  random_init=params.random_init, progress=ctx.progress)
    return {"embedding_set_id": embedding_set.id, "count": embedding_set.count, "dim": embedding_set.dim,
            "checkpoint_id": embedding_set.checkpoint_id, "encoder": embedding_set.params.get("encoder")}


@job_kind("select")
def run_select(params: SelectParams, ctx: JobContext) -> dict[str, Any]:
    """Run the strategy on the project's pool and persist the picks."""
    from segloop.platform.services.selection import select

    ctx.progress(0.1, f"running {params.strategy}")
    run = select(params, job_id=ctx.job_id)
    return {"selection_id": run.selection.id, "picks": [i.frame_id for i in run.items]}
