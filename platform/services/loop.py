"""One round of the loop on a DB project: select → label → fine-tune → predict → evaluate.

Labels come from the web UI (the round then stops after selecting, waiting for the annotators) or,
when simulating, from ground truth through the oracle (`oracle.label_selection`, which reads only
the picked frames). Each round is recorded in the database: the selection run (picks), a `vss`
checkpoint whose params hold the round number, the selection id and the labeled frame ids, and
metrics rows (scope "round", key "round-N") against that checkpoint; the new per-frame uncertainty
feeds the next round's uncertainty or hybrid selection.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segloop.platform.core.settings import Settings, load_settings
from segloop.platform.db.engine import get_engine, session_scope
from segloop.platform.db.stores import artifacts, metrics, projects
from segloop.platform.vss.head import VSSConfig

Progress = Callable[[float, str], None]


@dataclass
class RoundConfig:
    """Settings of one round (defaults run in a minute or two on a 2-core CPU for a small project)."""

    strategy: str = "kcenter"
    budget: int = 8
    strategy_params: dict[str, Any] = field(default_factory=dict)
    max_per_video: int | None = None
    min_gap_frames: int = 0
    backbone: str = "vit_tiny_patch16_224"
    pretrained: str | None = None
    short_side: int = 192
    embed_img_size: int = 112
    vss: VSSConfig = field(default_factory=VSSConfig)


@dataclass
class RoundResult:
    """What a round did; `checkpoint_id` is None when it stopped to wait for human labels."""

    round: int
    selection_id: int
    picked: list[int]
    labeled_frames: int
    checkpoint_id: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    status: str = "done"


def next_round_number(project: str, settings: Settings) -> int:
    """1 + the highest round recorded on the project's vss checkpoints."""
    with session_scope(get_engine(settings)) as session:
        info = projects.get_project(session, project)
        rounds = [int(c.params.get("round", 0)) for c in artifacts.list_checkpoints(session, info.id, kind="vss")]
    return max(rounds, default=0) + 1


def ensure_embeddings(project: str, config: RoundConfig, settings: Settings) -> int:
    """The newest embedding set of the project, made with the round's backbone when there is none."""
    from segloop.platform.services.embedding import embed_project

    with session_scope(get_engine(settings)) as session:
        info = projects.get_project(session, project)
        sets = artifacts.list_embedding_sets(session, info.id)
    if sets:
        return sets[0].id
    return embed_project(project, config.backbone, config.pretrained, img_size=config.embed_img_size,
                         settings=settings).id


def run_round(project: str, config: RoundConfig, oracle=None, *, settings: Settings | None = None,
              job_id: int | None = None, progress: Progress | None = None) -> RoundResult:
    """Select, label (oracle) or stop for the UI, fine-tune, predict and evaluate; everything recorded."""
    from segloop.platform.services.finetuning import finetune_vss_project, load_project, predict_project
    from segloop.platform.services.oracle import label_selection
    from segloop.platform.services.selection import run_selection
    from segloop.selectors.constraints import Constraints

    settings = settings or load_settings()
    report = progress or (lambda fraction, message: None)
    number = next_round_number(project, settings)
    embedding_set_id = ensure_embeddings(project, config, settings)
    report(0.05, f"round {number}: selecting {config.budget} frames with {config.strategy}")
    constraints = Constraints(budget=config.budget, max_per_video=config.max_per_video,
                              min_gap_frames=config.min_gap_frames)
    run = run_selection(project, config.strategy, constraints, config.strategy_params, embedding_set_id,
                        settings=settings, job_id=job_id)
    picked = [item.frame_id for item in run.items]
    if oracle is None:
        labeled = len(load_project(project, settings).labeled())
        return RoundResult(number, run.selection.id, picked, labeled, status="awaiting labels")
    report(0.15, f"round {number}: labeling {len(picked)} frames (simulated annotator)")
    label_selection(run.selection.id, oracle, settings)
    frames = load_project(project, settings)
    reference = oracle_reference(oracle, frames, settings)
    out_dir = settings.runs_dir / "finetune" / project / f"round-{number}"
    result = finetune_vss_project(
        project, out_dir, pretrained=config.pretrained, backbone=config.backbone, short_side=config.short_side,
        config=config.vss, reference=reference, settings=settings, job_id=job_id,
        extra_params={"round": number, "selection_id": run.selection.id, "strategy": config.strategy,
                      "picked_frame_ids": picked},
        progress=lambda f, m: report(0.2 + 0.6 * f, f"round {number}: {m}"))
    report(0.85, f"round {number}: predicting every frame")
    predict_project(project, result.checkpoint_id, settings=settings, job_id=job_id)
    with session_scope(get_engine(settings)) as session:
        info = projects.get_project(session, project)
        rows = [("round", f"round-{number}", name, value) for name, value in result.metrics.items()
                if ":" not in name]
        rows.append(("round", f"round-{number}", "labeled_frames", float(len(frames.labeled()))))
        metrics.add_metrics(session, rows, job_id=job_id, project_id=info.id, checkpoint_id=result.checkpoint_id,
                            step=number)
    report(1.0, f"round {number} done")
    return RoundResult(number, run.selection.id, picked, len(frames.labeled()), result.checkpoint_id, result.metrics)


def oracle_reference(oracle, frames, settings: Settings):
    """(video name, source index) -> binary class map from the oracle's ground truth at the stored size (None for a
    video the oracle has no ground truth for)."""
    import numpy as np

    from segloop.platform.features.backbone import read_rgb

    sizes = {name: read_rgb(paths[0]).shape[:2] for name, paths in frames.videos.items()}

    def reference(name: str, source_index: int):
        if not oracle.covers(name):
            return None
        height, width = sizes[name]
        labels = oracle.label_map(name, source_index, (width, height))
        return np.where(labels == 255, 255, labels > 0).astype(np.uint8)

    return reference


def oracle_from(path: str | Path | None):
    """A DavisOracle for a ground-truth folder (`<dir>/<video>/%05d.png` or a DAVIS root), or None."""
    if path is None:
        return None
    from segloop.platform.services.oracle import DavisOracle

    root = Path(path)
    if (root / "Annotations" / "480p").is_dir():
        root = root / "Annotations" / "480p"
    if not root.is_dir():
        raise ValueError(f"--oracle: {path} is not a folder")
    return DavisOracle(root)
