"""Run an operation from its params: the one translation of a params dataclass into service calls,
shared by the operation's job handler and its CLI command (so both run the same thing)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from segloop.platform.core.settings import Settings, load_settings
from segloop.platform.db.engine import get_engine
from segloop.platform.services.models import project_encoder
from segloop.platform.services.params import (
    FinetuneVOSParams,
    FinetuneVSSParams,
    LoopRoundParams,
    PretrainParams,
)


def finetune_vss(params: FinetuneVSSParams, out_dir: Path, *, device: str = "auto", settings: Settings | None = None,
                 job_id: int | None = None, progress=None):
    """Train a VSS head as `params` say into `out_dir`; the FinetuneResult (None on non-zero torchrun ranks)."""
    from segloop.platform.services.finetuning import FinetuneError, finetune_vss_project, load_project
    from segloop.platform.services.loop import oracle_from, oracle_reference
    from segloop.platform.vss.head import VSSConfig
    from segloop.platform.vss.temporal import TemporalConfig

    settings = settings or load_settings()
    truth = oracle_from(params.oracle)
    reference = None
    if truth is not None:  # the project's frames are loaded here only for the oracle (training loads them again)
        frames = load_project(params.project, settings)
        if not any(truth.covers(name) for name in frames.videos):  # it scored 0 frames and reported success
            raise FinetuneError(f"oracle: {params.oracle} holds ground truth for none of the project's videos "
                                f"({', '.join(sorted(frames.videos)[:5])}): nothing could be scored against it")
        reference = oracle_reference(truth, frames, settings)
    config = VSSConfig(head=params.head, epochs=params.epochs, min_steps=params.min_steps, lr=params.lr,
                       finetune_backbone=params.finetune_backbone, layer_decay=params.layer_decay,
                       seed=params.seed, device=device)
    encoder = project_encoder(params.project, params.checkpoint_id, params.weights, params.backbone,
                              get_engine(settings))
    _say(progress, f"encoder: {encoder.source}")
    return finetune_vss_project(params.project, out_dir, pretrained=encoder.weights,
                                backbone=encoder.backbone, short_side=params.short_side, config=config,
                                val_fraction=params.val_fraction, val_videos=params.val_videos,
                                temporal=TemporalConfig(seed=params.seed) if params.temporal else None,
                                reference=reference, settings=settings,
                                job_id=job_id, progress=progress)


def finetune_vos(params: FinetuneVOSParams, out_dir: Path, *, device: str = "auto", settings: Settings | None = None,
                 job_id: int | None = None, progress=None):
    """Train the memory VOS model as `params` say into `out_dir`; the FinetuneResult."""
    from segloop.platform.services.finetuning import FinetuneError, finetune_vos_project
    from segloop.platform.vos.memory_train import MemoryTrainConfig

    if device not in ("auto", "cpu"):  # it was accepted and ignored
        raise FinetuneError(f"device: the VOS model trains on the CPU (its training is bounded to minutes); got "
                            f"{device!r}")
    settings = settings or load_settings()
    encoder = project_encoder(params.project, params.checkpoint_id, params.weights, params.backbone,
                              get_engine(settings))
    _say(progress, f"encoder: {encoder.source}")
    return finetune_vos_project(params.project, out_dir, pretrained=encoder.weights, backbone=encoder.backbone,
                                config=MemoryTrainConfig(steps=params.steps, seed=params.seed),
                                prop_short_side=params.prop_short_side, settings=settings, job_id=job_id,
                                progress=progress)


def loop_round(params: LoopRoundParams, *, job_id: int | None = None, progress=None):
    """One active-learning round as `params` say; the RoundResult."""
    from segloop.platform.services.loop import RoundConfig, oracle_from, run_round

    encoder = project_encoder(params.project, params.checkpoint_id, params.weights, params.backbone)
    _say(progress, f"encoder: {encoder.source}")
    config = RoundConfig(strategy=params.strategy, budget=params.budget, strategy_params=params.strategy_params,
                         max_per_video=params.max_per_video, backbone=encoder.backbone,
                         pretrained=encoder.weights, pretrained_id=encoder.checkpoint_id)
    return run_round(params.project, config, oracle_from(params.oracle), job_id=job_id, progress=progress)


def _say(progress, message: str) -> None:
    """Tell the caller's progress callback (fraction 0) which encoder an operation builds on."""
    if progress is not None:
        progress(0.0, message)


def pretrain_config(params: PretrainParams):
    """The pretraining config of a pretrain job: its preset, then `config` overrides, then the explicit fields."""
    from segloop.pretrain.config import load_config

    overrides: dict[str, Any] = {section: dict(values) if isinstance(values, dict) else values
                                 for section, values in params.config.items()}
    if params.backbone is not None:
        overrides.setdefault("model", {})["backbone"] = params.backbone
    run = overrides.setdefault("run", {})
    if params.max_minutes is not None:
        run["max_minutes"] = params.max_minutes
    if params.steps is not None:
        run["steps"] = params.steps
        run["max_minutes"] = params.max_minutes  # explicit steps win over the preset's time budget
    return load_config(preset_path(params.preset) if params.preset else None, overrides)


def preset_names() -> list[str]:
    """The pretraining preset files shipped in segloop/pretrain/configs."""
    return sorted(p.name for p in _preset_folder().glob("*.yaml"))


def preset_path(name: str) -> Path:
    """The pretraining preset file called `name`, or ValidationError listing the presets."""
    from segloop.platform.core.errors import ValidationError

    if name not in preset_names():
        raise ValidationError(f"preset {name!r} does not exist; presets: {', '.join(preset_names())}")
    return _preset_folder() / name


def _preset_folder() -> Path:
    """segloop/pretrain/configs."""
    from importlib import resources

    return Path(str(resources.files("segloop.pretrain") / "configs"))
