"""Job kinds of fine-tuning: finetune_vss, finetune_vos, predict and loop_round (resumable through their out dirs)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from segloop.platform.jobs.registry import JobContext, job_kind


def _weights(checkpoint_id: int | None, path: str | None) -> str | None:
    """A pretrained weights file from a DB checkpoint id or a path."""
    if checkpoint_id is None:
        return path
    from segloop.platform.db.engine import session_scope
    from segloop.platform.db.stores import artifacts

    with session_scope() as session:
        return artifacts.get_checkpoint(session, checkpoint_id).path


@dataclass
class FinetuneVSSParams:
    """Parameters of a finetune_vss job (same meaning as `segloop finetune vss`)."""

    project: str = "default"
    checkpoint_id: int | None = None
    weights: str | None = None
    backbone: str = "vit_tiny_patch16_224"
    short_side: int = 192
    head: str = "multiscale"
    epochs: int = 30
    min_steps: int = 200
    finetune_backbone: bool = False
    val_fraction: float = 0.2
    oracle: str | None = None
    seed: int = 0


@job_kind("finetune_vss", FinetuneVSSParams,
          "Train a VSS head on a project's labeled frames; checkpoint + metrics (a retry resumes training).")
def run_finetune_vss(params: FinetuneVSSParams, ctx: JobContext) -> dict[str, Any]:
    """Fine-tune into runs/finetune/<project>/vss-job-<id>."""
    from segloop.platform.core.settings import load_settings
    from segloop.platform.services.finetuning import finetune_vss_project, load_project
    from segloop.platform.services.loop import oracle_from, oracle_reference
    from segloop.platform.vss.head import VSSConfig

    settings = load_settings()
    truth = oracle_from(params.oracle)
    reference = oracle_reference(truth, load_project(params.project, settings), settings) if truth else None
    config = VSSConfig(head=params.head, epochs=params.epochs, min_steps=params.min_steps,
                       finetune_backbone=params.finetune_backbone, seed=params.seed)
    result = finetune_vss_project(params.project, settings.runs_dir / "finetune" / params.project / f"vss-job-{ctx.job_id}",
                                  pretrained=_weights(params.checkpoint_id, params.weights), backbone=params.backbone,
                                  short_side=params.short_side, config=config, val_fraction=params.val_fraction,
                                  reference=reference, settings=settings, job_id=ctx.job_id, progress=ctx.progress)
    return {"checkpoint_id": result.checkpoint_id, "path": result.path, "metrics": result.metrics}


@dataclass
class FinetuneVOSParams:
    """Parameters of a finetune_vos job (same meaning as `segloop finetune vos`)."""

    project: str = "default"
    checkpoint_id: int | None = None
    weights: str | None = None
    backbone: str = "vit_tiny_patch16_224"
    short_side: int = 192
    steps: int = 300
    prop_short_side: int = 240
    radius: int = 6
    seed: int = 0


@job_kind("finetune_vos", FinetuneVOSParams,
          "Train the propagation-refinement decoder on a project's masks; J&F plain vs refined.")
def run_finetune_vos(params: FinetuneVOSParams, ctx: JobContext) -> dict[str, Any]:
    """Fine-tune into runs/finetune/<project>/vos-job-<id>."""
    from segloop.platform.core.settings import load_settings
    from segloop.platform.services.finetuning import finetune_vos_project
    from segloop.platform.vos.refiner import RefineConfig

    settings = load_settings()
    result = finetune_vos_project(params.project, settings.runs_dir / "finetune" / params.project / f"vos-job-{ctx.job_id}",
                                  pretrained=_weights(params.checkpoint_id, params.weights), backbone=params.backbone,
                                  short_side=params.short_side, config=RefineConfig(steps=params.steps, seed=params.seed),
                                  prop_short_side=params.prop_short_side, prop_radius=params.radius,
                                  settings=settings, job_id=ctx.job_id, progress=ctx.progress)
    return {"checkpoint_id": result.checkpoint_id, "path": result.path, "metrics": result.metrics}


@dataclass
class PredictParams:
    """Parameters of a predict job (same meaning as `segloop predict`)."""

    project: str = "default"
    checkpoint_id: int = 0


@job_kind("predict", PredictParams, "Predict every frame of a project with a VSS checkpoint; uncertainty scores.")
def run_predict(params: PredictParams, ctx: JobContext) -> dict[str, Any]:
    """Store predictions and frame scores."""
    from segloop.platform.services.finetuning import predict_project

    return predict_project(params.project, params.checkpoint_id, job_id=ctx.job_id, progress=ctx.progress)


@dataclass
class LoopRoundParams:
    """Parameters of a loop_round job (same meaning as `segloop loop round`)."""

    project: str = "default"
    strategy: str = "kcenter"
    budget: int = 8
    strategy_params: dict = field(default_factory=dict)
    checkpoint_id: int | None = None
    weights: str | None = None
    backbone: str = "vit_tiny_patch16_224"
    oracle: str | None = None
    max_per_video: int | None = None


@job_kind("loop_round", LoopRoundParams, "One round: select, label (oracle) or wait, fine-tune, predict, evaluate.")
def run_loop_round(params: LoopRoundParams, ctx: JobContext) -> dict[str, Any]:
    """Run the round and return what it recorded."""
    from dataclasses import asdict

    from segloop.platform.services.loop import RoundConfig, oracle_from, run_round

    config = RoundConfig(strategy=params.strategy, budget=params.budget, strategy_params=params.strategy_params,
                         max_per_video=params.max_per_video, backbone=params.backbone,
                         pretrained=_weights(params.checkpoint_id, params.weights))
    return asdict(run_round(params.project, config, oracle_from(params.oracle), job_id=ctx.job_id,
                            progress=ctx.progress))
