"""Job kinds of fine-tuning: finetune_vss, finetune_vos, predict and loop_round (resumable through their out dirs)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from segloop.platform.jobs.registry import JobContext, job_kind
from segloop.platform.services.params import FinetuneVOSParams, FinetuneVSSParams, LoopRoundParams, PredictParams


def _out_dir(project: str, task: str, job_id: int) -> Path:
    """runs/finetune/<project>/<task>-job-<id>: one folder per job, so a retry resumes in it."""
    from segloop.platform.core.settings import load_settings

    return load_settings().runs_dir / "finetune" / project / f"{task}-job-{job_id}"


@job_kind("finetune_vss")
def run_finetune_vss(params: FinetuneVSSParams, ctx: JobContext) -> dict[str, Any]:
    """Fine-tune into runs/finetune/<project>/vss-job-<id>."""
    from segloop.platform.services import runs

    result = runs.finetune_vss(params, _out_dir(params.project, "vss", ctx.job_id), job_id=ctx.job_id,
                               progress=ctx.progress)
    return {"checkpoint_id": result.checkpoint_id, "path": result.path, "metrics": result.metrics}


@job_kind("finetune_vos")
def run_finetune_vos(params: FinetuneVOSParams, ctx: JobContext) -> dict[str, Any]:
    """Fine-tune into runs/finetune/<project>/vos-job-<id>."""
    from segloop.platform.services import runs

    result = runs.finetune_vos(params, _out_dir(params.project, "vos", ctx.job_id), job_id=ctx.job_id,
                               progress=ctx.progress)
    return {"checkpoint_id": result.checkpoint_id, "path": result.path, "metrics": result.metrics}


@job_kind("predict")
def run_predict(params: PredictParams, ctx: JobContext) -> dict[str, Any]:
    """Store predictions and frame scores."""
    from segloop.platform.services.finetuning import predict_project

    return predict_project(params.project, params.checkpoint_id, job_id=ctx.job_id, progress=ctx.progress)


@job_kind("loop_round")
def run_loop_round(params: LoopRoundParams, ctx: JobContext) -> dict[str, Any]:
    """Run the round and return what it recorded."""
    from dataclasses import asdict

    from segloop.platform.services import runs

    return asdict(runs.loop_round(params, job_id=ctx.job_id, progress=ctx.progress))
