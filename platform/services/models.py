"""The project's models, found in one place: its pretrained encoder, VOS model and VSS head, and which
propagator to trust on each video (self-validation on the human masks).

Every caller that needs "the project's model" (propagation drafts on the Label page, the propagate
job, keyframe suggestions, fine-tune defaults, embedding for the Select page) asks here, so nothing
runs a random-init network when the project has a trained one. Without a trained encoder the default
propagator is raw colour (`pixels`), never a random network.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from segloop.platform.core.settings import Settings, load_settings
from segloop.platform.core.storage import resolve_inside
from segloop.platform.db.engine import get_engine, session_scope
from segloop.platform.db.entities import CheckpointInfo
from segloop.platform.db.stores import artifacts, footage, metrics, projects
from segloop.platform.vos import propagation as vos

PIXELS = "pixels"
ENCODER = "encoder"
VOS_MODEL = "vos_model"
AUTO = "auto"
SELF_VALIDATION_SCOPE = "self-validation"
SELF_VALIDATION_METRIC = "loo_jf"


@dataclass(frozen=True)
class ProjectModels:
    """The newest trained model of each kind in a project (None where there is none)."""

    project_id: int
    encoder: CheckpointInfo | None = None
    vos: CheckpointInfo | None = None
    vss: CheckpointInfo | None = None

    @property
    def encoder_source(self) -> Path | None:
        """What `make_featurizer` takes for the encoder: its pretrain run folder, else its weights file."""
        return None if self.encoder is None else vos.encoder_source(self.encoder.path)

    @property
    def vos_model_dir(self) -> Path | None:
        """The folder of the project's newest memory VOS model, if it has one (older refiners do not count)."""
        from segloop.platform.vos.memory import CONFIG_NAME

        if self.vos is None or not (Path(self.vos.path) / CONFIG_NAME).is_file():
            return None
        return Path(self.vos.path)

    @property
    def newest_predictor(self) -> CheckpointInfo | None:
        """The newer of the project's VSS head and VOS model: what `predict` uses unless told otherwise."""
        return max((c for c in (self.vss, self.vos) if c is not None), key=lambda c: c.id, default=None)

    def propagators(self) -> list[str]:
        """Names of the propagators this project can use, most trained first."""
        return (([VOS_MODEL] if self.vos_model_dir is not None else [])
                + ([ENCODER] if self.encoder is not None else []) + [PIXELS])

    def default_propagator(self) -> str:
        """The propagator to use before any self-validation: the trained encoder if any, else raw colour."""
        return self.propagators()[0]


def project_models(project_id: int, engine: Engine | None = None) -> ProjectModels:
    """The project's newest pretrain, VOS and VSS checkpoints."""
    with session_scope(engine or get_engine()) as session:
        newest = {kind: next(iter(artifacts.list_checkpoints(session, project_id, kind)), None)
                  for kind in ("pretrain", "vos", "vss")}
    return ProjectModels(project_id, newest["pretrain"], newest["vos"], newest["vss"])


def make_propagator(models: ProjectModels, name: str, config: vos.PropagationConfig, device: str = "auto"):
    """A featurizer for one of the project's propagators ('vos_model', 'encoder' or 'pixels')."""
    if name == PIXELS:
        return vos.make_featurizer("pixels", config=config, device=device)
    if name == VOS_MODEL and models.vos_model_dir is not None:
        from segloop.platform.vos.memory import load_memory_propagator

        short_side = (models.vos.params.get("propagation") or {}).get("short_side", config.short_side)
        return load_memory_propagator(models.vos_model_dir, int(short_side))
    if name == ENCODER:
        if models.encoder is None:
            raise vos.PropagationError("this project has no pretrained encoder yet: run pretrain on it first")
        return vos.make_featurizer("backbone", models.encoder.backbone, models.encoder_source, config, device)
    raise vos.PropagationError(f"unknown propagator {name!r} ({', '.join(models.propagators())})")


@dataclass(frozen=True)
class EncoderChoice:
    """The pretrained weights an operation builds on, and where they came from."""

    checkpoint_id: int | None
    weights: str | None
    backbone: str
    source: str


def project_encoder(project: str, checkpoint_id: int | None, weights: str | None, backbone: str,
                    engine: Engine | None = None) -> EncoderChoice:
    """The weights given (a checkpoint id, a local file or a `segloop pretrain --out` folder), else the project's
    newest pretrained encoder.

    Weights are built as the backbone they were trained as (the checkpoint's, or the one the run's config.yaml
    records), else as `backbone`; a file that is a registered checkpoint of the project carries its id. Only a
    project without any pretrained encoder falls back to a random-init `backbone`, and the choice says so.
    """
    from segloop.platform.services.checkpoints import PRETRAINED_KINDS, checkpoint_backbone, local_weights
    from segloop.pretrain.backbones import backbone_for

    engine = engine or get_engine()
    if checkpoint_id is not None:
        trained_as, path = checkpoint_backbone(checkpoint_id, engine)
        return EncoderChoice(checkpoint_id, path, trained_as, f"checkpoint {checkpoint_id}")
    with session_scope(engine) as session:
        project_id = projects.get_project(session, project).id
        known = artifacts.list_checkpoints(session, project_id) if weights is not None else []
    if weights is not None:
        path = str(Path(local_weights(weights)).resolve())
        registered = next((c for c in known if c.path == path and c.kind in PRETRAINED_KINDS), None)
        if registered is not None:
            return EncoderChoice(registered.id, path, registered.backbone, f"weights {weights}")
        return EncoderChoice(None, path, backbone_for(path, backbone), f"weights {weights}")
    encoder = project_models(project_id, engine).encoder
    if encoder is None:
        return EncoderChoice(None, None, backbone, f"random-init {backbone}: the project has no pretrained encoder")
    return EncoderChoice(encoder.id, encoder.path, encoder.backbone,
                         f"checkpoint {encoder.id}: the project's newest pretrained encoder")


@dataclass
class ModelChoice:
    """Which propagator a video uses and why: its self-validation scores (empty: the default rule)."""

    propagator: str
    scores: dict[str, float] = field(default_factory=dict)
    reason: str = ""


def stored_choice(video_id: int, models: ProjectModels, engine: Engine | None = None) -> ModelChoice:
    """The best propagator by the video's newest stored self-validation, else the project's default."""
    with session_scope(engine or get_engine()) as session:
        rows = metrics.newest_metrics(session, SELF_VALIDATION_SCOPE, models.project_id, limit=200)
    scores: dict[str, float] = {}
    for row in rows:  # newest first: the first score seen per propagator wins
        video, _, name = row.scope_key.partition("/")
        if video == str(video_id) and row.name == SELF_VALIDATION_METRIC and name in models.propagators():
            scores.setdefault(name, row.value)
    if not scores:
        return ModelChoice(models.default_propagator(), {}, "default (fewer than 2 human-labelled frames scored)")
    best = max(scores, key=scores.get)
    return ModelChoice(best, scores, "best leave-one-keyframe-out J&F on this video's human masks")


def self_validate(video_id: int, config: vos.PropagationConfig | None = None, *, settings: Settings | None = None,
                  job_id: int | None = None, device: str = "auto") -> ModelChoice:
    """Score every available propagator on the video's human masks (leave one keyframe out) and store the scores.

    With fewer than 2 human-labelled frames nothing can be scored: the project's default is returned.
    """
    return _validated(video_id, config or vos.PropagationConfig(), settings or load_settings(), job_id, device)[0]


def video_propagator(video_id: int, config: vos.PropagationConfig, *, settings: Settings | None = None,
                     job_id: int | None = None, device: str = "auto"):
    """(featurizer, choice) of the video's best propagator: self-validated when it has ≥ 2 human masks."""
    choice, built, models = _validated(video_id, config, settings or load_settings(), job_id, device)
    featurizer = built.get(choice.propagator) or make_propagator(models, choice.propagator, config, device)
    return featurizer, choice


def requested_propagator(method: str, backbone: str | None, checkpoint, config: vos.PropagationConfig,
                         device: str = "auto", **options):
    """The featurizer `method` names for every video (`auto` with weights given: those weights' features), or None
    for `auto` without weights: each video then uses its own best (`propagator_for`)."""
    if method == AUTO and checkpoint is None:
        return None
    return vos.make_featurizer("backbone" if method == AUTO else method, backbone, checkpoint, config, device,
                               **options)


def propagator_for(video_id: int, config: vos.PropagationConfig, fixed=None, *, settings: Settings | None = None,
                   job_id: int | None = None, device: str = "auto") -> tuple[object, ModelChoice | None]:
    """(featurizer, choice): `fixed` when one was asked for (no choice), else the video's best propagator and why."""
    if fixed is not None:
        return fixed, None
    return video_propagator(video_id, config, settings=settings, job_id=job_id, device=device)


def _validated(video_id: int, config: vos.PropagationConfig, settings: Settings, job_id: int | None,
               device: str) -> tuple[ModelChoice, dict[str, object], ProjectModels]:
    """(choice, the featurizers built to score it, the project's models): each model is loaded once."""
    from segloop.platform.services.propagation import human_label_maps
    from segloop.platform.vos.selfval import rank_propagators

    engine = get_engine(settings)
    with session_scope(engine) as session:
        video = footage.get_video(session, video_id)
        frames = footage.list_frames(session, video_id)
        human = human_label_maps(session, video)
    models = project_models(video.project_id, engine)
    if len(human) < 2:
        return ModelChoice(models.default_propagator(), {}, "default (fewer than 2 human-labelled frames)"), {}, models
    reader = vos.FrameFolder([resolve_inside(settings.data_dir, f.image_path) for f in frames])
    featurizers = {name: make_propagator(models, name, config, device) for name in models.propagators()}
    scores = rank_propagators(reader, human, featurizers, config)
    with session_scope(engine) as session:
        metrics.add_metrics(session, [(SELF_VALIDATION_SCOPE, f"{video_id}/{name}", SELF_VALIDATION_METRIC, value)
                                      for name, value in scores.items()],
                            job_id=job_id, project_id=video.project_id)
    choice = ModelChoice(next(iter(scores)), scores,
                         f"best leave-one-keyframe-out J&F over {len(human)} human-labelled frames")
    return choice, featurizers, models


def self_validation_table(project_id: int, engine: Engine | None = None) -> list[dict]:
    """One row per video with stored self-validation: its propagators' leave-one-out J&F and the one used."""
    engine = engine or get_engine()
    with session_scope(engine) as session:
        rows = metrics.newest_metrics(session, SELF_VALIDATION_SCOPE, project_id, limit=2000)
        names = {v.id: v.name for v in footage.list_videos(session, project_id)}
    found = project_models(project_id, engine)
    table = []
    for video_id in sorted({int(r.scope_key.partition("/")[0]) for r in rows}):
        choice = stored_choice(video_id, found, engine)
        if choice.scores:
            scores = {name: round(value, 3) for name, value in choice.scores.items()}
            table.append({"video": names.get(video_id, str(video_id)), **scores, "used": choice.propagator})
    return table
