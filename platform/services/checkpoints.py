"""Checkpoints: the pretrained weights of an operation (a DB checkpoint id or a local file, resolved in one place),
and the registered models as people choose them (date, job, parameters, score against the baseline, curves)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from segloop.platform.core.errors import ValidationError
from segloop.platform.core.settings import Settings, load_settings
from segloop.platform.core.storage import read_torch_dict
from segloop.platform.db.engine import get_engine, session_scope
from segloop.platform.db.entities import CheckpointInfo
from segloop.platform.db.stores import artifacts, metrics, projects
from segloop.platform.db.stores import jobs as job_store

PRETRAINED_KINDS = ("pretrain",)


def pretrained_checkpoint(checkpoint_id: int, engine: Engine | None = None) -> CheckpointInfo:
    """The pretrain checkpoint with this id (its weights file exists), or an error saying why not."""
    with session_scope(engine or get_engine()) as session:
        return artifacts.usable_checkpoint(session, checkpoint_id, PRETRAINED_KINDS)


def checkpoint_backbone(checkpoint_id: int, engine: Engine | None = None) -> tuple[str, str]:
    """(backbone name, weights file) of a pretrain checkpoint id."""
    checkpoint = pretrained_checkpoint(checkpoint_id, engine)
    return checkpoint.backbone, checkpoint.path


def local_weights(weights: str | Path) -> str:
    """The weights file of a local file or `segloop pretrain --out` folder (ValidationError naming it and why not)."""
    from segloop.pretrain.backbones import BackboneError, weights_file

    try:
        return str(weights_file(Path(weights).expanduser()))
    except BackboneError as exc:
        raise ValidationError(str(exc)) from None


SCORE_METRICS = {"vss": ("mIoU", "mIoU_majority_baseline"), "vos": ("J&F_model", "J&F_plain")}
BASELINE_NAMES = {"vss": "majority class", "vos": "plain propagation"}
PRETRAIN_SERIES = ("loss", "dino", "ibot", "koleo", "random_walk", "dense")
SUMMARY_PARAMS = ("head", "epochs", "lr", "steps", "finetune_backbone", "pretrained", "model", "short_side")


@dataclass(frozen=True)
class CheckpointSummary:
    """A registered model as a person chooses it: when, by which job, with what, and how well it scored."""

    info: CheckpointInfo
    score_name: str | None = None
    score: float | None = None
    baseline_name: str | None = None
    baseline: float | None = None
    job_kind: str | None = None

    @property
    def below_baseline(self) -> bool:
        """Whether the model scored no better than its baseline (majority class, plain propagation)."""
        return self.score is not None and self.baseline is not None and self.score <= self.baseline

    @property
    def label(self) -> str:
        """One line naming the model: id, kind, backbone, date, job and score."""
        info = self.info
        parts = [f"checkpoint {info.id}", info.kind, info.backbone, f"{info.created_at:%Y-%m-%d %H:%M}"]
        if info.job_id is not None:
            parts.append(f"job {info.job_id}")
        if self.score is not None:
            parts.append(f"{self.score_name} {self.score:.3f}" + (" (below baseline)" if self.below_baseline else ""))
        return " · ".join(parts)

    def row(self) -> dict:
        """The model as a table row (date, job, parameters, score, baseline)."""
        info = self.info
        return {"checkpoint": info.id, "kind": info.kind, "backbone": info.backbone,
                "created": f"{info.created_at:%Y-%m-%d %H:%M}",
                "job": "" if info.job_id is None else f"{self.job_kind or 'job'} {info.job_id}",
                "parameters": parameter_summary(info.params), "score": self.score_name or "",
                "value": self.score, "baseline": self.baseline_name or "", "baseline value": self.baseline,
                "below baseline": "⚠ below baseline" if self.below_baseline else ""}


def parameter_summary(params: dict) -> str:
    """The training parameters worth seeing in a list (config and spec flattened, long lists left out)."""
    flat: dict = {}
    for key, value in (params or {}).items():
        if isinstance(value, dict) and key in ("config", "spec"):
            flat.update({k: v for k, v in value.items() if not isinstance(v, (list, dict))})
        elif not isinstance(value, (list, dict)):
            flat[key] = value
    shown = {k: (Path(str(v)).parent.name or Path(str(v)).name if k == "pretrained" and v else v)
             for k, v in flat.items() if k in SUMMARY_PARAMS or k == "weights"}
    return ", ".join(f"{k}={v}" for k, v in shown.items())


def checkpoint_summaries(engine: Engine, project_id: int | None, kinds: tuple[str, ...] | None = None
                         ) -> list[CheckpointSummary]:
    """A project's checkpoints (optionally of some kinds), newest first, with their score and baseline."""
    with session_scope(engine) as session:
        found = [c for c in artifacts.list_checkpoints(session, project_id) if kinds is None or c.kind in kinds]
        overall = metrics.newest_metrics(session, "overall", project_id)
        job_kinds = {job_id: _job_kind(session, job_id) for job_id in {c.job_id for c in found} - {None}}
    values: dict[int, dict[str, float]] = {}
    for row in reversed(overall):  # oldest first: the newest value of a name wins
        if row.checkpoint_id is not None:
            values.setdefault(row.checkpoint_id, {})[row.name] = row.value
    summaries = []
    for info in found:
        score_name, baseline_name = SCORE_METRICS.get(info.kind, (None, None))
        scored = values.get(info.id, {})
        summaries.append(CheckpointSummary(
            info, score_name if score_name in scored else None, scored.get(score_name),
            BASELINE_NAMES.get(info.kind) if baseline_name in scored else None, scored.get(baseline_name),
            job_kinds.get(info.job_id)))
    return summaries


def _job_kind(session, job_id: int) -> str | None:
    """The kind of a job (None when it was deleted)."""
    try:
        return job_store.get_job(session, job_id).kind
    except LookupError:
        return None


def project_class_names(engine: Engine, project_id: int | None) -> list[str]:
    """Class names by the index VSS training gives them: background, then the project's label classes in order
    ('object' when it has none), as `finetuning.load_project` numbers them."""
    if project_id is None:
        return ["background", "object"]
    with session_scope(engine) as session:
        names = [c.name for c in projects.list_label_classes(session, project_id)]
    return ["background"] + (names or ["object"])


@dataclass(frozen=True)
class TrainingCurve:
    """What a training run recorded per step: (step, value) points per series, and its validation scores."""

    checkpoint_id: int
    points: list[dict]
    validation: dict[str, float]
    source: str


def training_curve(engine: Engine, checkpoint_id: int, settings: Settings | None = None) -> TrainingCurve:
    """The loss per step of a checkpoint's training (pretrain: metrics.jsonl of its run; VSS/VOS: the losses the
    training recorded) and its validation scores; empty points when the run recorded none."""
    with session_scope(engine) as session:
        info = artifacts.get_checkpoint(session, checkpoint_id)
        rows = [m for m in metrics.list_metrics(session, project_id=info.project_id)
                if m.checkpoint_id == checkpoint_id]
    validation = {m.name: m.value for m in rows if m.scope == "overall"}
    stepped = [{"step": m.step, "series": m.name, "value": m.value} for m in rows
               if m.scope == "train" and m.step is not None]
    if stepped:
        return TrainingCurve(checkpoint_id, stepped, validation, "recorded per step")
    losses = info.params.get("losses")
    if isinstance(losses, list) and losses:
        return TrainingCurve(checkpoint_id, _loss_points(losses), validation, "losses recorded with the model")
    path = resolve_stored(info.path, settings)
    if info.kind == "pretrain":
        return TrainingCurve(checkpoint_id, _pretrain_points(path), validation, "the pretrain run's metrics.jsonl")
    if info.kind == "vss":
        return TrainingCurve(checkpoint_id, _loss_points(_saved_losses(path)), validation, "losses saved in the head")
    return TrainingCurve(checkpoint_id, [], validation, "this training recorded no per-step values")


def resolve_stored(path: str, settings: Settings | None = None) -> Path:
    """A stored model path (absolute, or relative to the data dir)."""
    candidate = Path(path)
    return candidate if candidate.is_absolute() else (settings or load_settings()).data_dir / candidate


def _loss_points(losses: list) -> list[dict]:
    """(step, loss) points of a list of per-step losses."""
    return [{"step": step + 1, "series": "loss", "value": float(v)} for step, v in enumerate(losses)
            if isinstance(v, (int, float)) and math.isfinite(v)]


def _pretrain_points(weights: Path) -> list[dict]:
    """Per-step losses of the pretrain run that wrote `weights` (its metrics.jsonl), [] when unreadable."""
    folder = weights if weights.is_dir() else weights.parent
    points = []
    try:
        lines = (folder / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        step = record.get("step")
        for name, value in record.items():
            if isinstance(step, int) and name in PRETRAIN_SERIES and isinstance(value, (int, float)) \
                    and math.isfinite(value):
                points.append({"step": step, "series": name, "value": float(value)})
    return points


def _saved_losses(path: Path) -> list:
    """The per-step losses stored in a VSS head file ([] when unreadable)."""
    return list(read_torch_dict(path).get("losses", []))
