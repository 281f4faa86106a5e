"""Submitting jobs: params coerced into the operation's spec and every reference checked, then one job row.

Every way of queueing a job (CLI `jobs submit`, the Jobs page, uploads, the Label and Select pages) goes
through `submit_job`: a bad value raises ValidationError naming the field and the reason, and no row is made.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from segloop.platform.core.backbones import get_backbone
from segloop.platform.core.errors import NotFoundError, ValidationError
from segloop.platform.core.specs import FieldSpec, coerce, describe, rules_of, to_json
from segloop.platform.db.engine import session_scope
from segloop.platform.db.entities import JobInfo
from segloop.platform.db.stores import artifacts, audit, footage, projects
from segloop.platform.db.stores import jobs as job_store
from segloop.platform.services import access
from segloop.platform.services.access import Actor
from segloop.platform.services.auth import actor_name
from segloop.platform.services.operations import get_operation, operations
from segloop.platform.services.runs import preset_names, preset_path, pretrain_config


def submit_job(engine: Engine, kind: str, values: dict[str, Any], project: str | None = None, *,
               actor: Actor | None = None) -> JobInfo:
    """Queue a job of `kind` once its params fit the spec and its references exist; the job's row.

    The job belongs to the params' project (or to `project` for kinds without one, created if new).
    Launching jobs is an admin's action; the launch is audited.
    """
    access.require(engine, actor, "run_jobs")
    params = coerce(get_operation(kind).params, values, where=f"{kind} params")
    with session_scope(engine) as session:
        check_references(session, kind, params)
        project_id = _project_id(session, params, project)
        job = job_store.submit_job(session, kind, to_json(params), project_id=project_id)
        audit.record(session, actor_name(actor), "job_submit", f"job {job.id}", detail={"kind": kind})
        return job


def verify_params(engine: Engine, kind: str, params: Any) -> Any:
    """The params themselves once every reference they make exists (for commands that run an operation now)."""
    with session_scope(engine) as session:
        check_references(session, kind, params)
    return params


def check_references(session: Session, kind: str, params: Any) -> None:
    """ValidationError naming the field when something a params field refers to does not exist or cannot be used."""
    for field in dataclasses.fields(params):
        ref, value = rules_of(field).ref, getattr(params, field.name)
        if ref is None:
            continue
        name, _, argument = ref.partition(":")
        try:
            if value is not None:
                REFERENCE_CHECKS[name](session, value, argument or params)
            elif name in DEFAULT_CHECKS:
                DEFAULT_CHECKS[name](session, argument, params)
        except (NotFoundError, ValueError) as exc:
            raise ValidationError(f"{kind} params: {field.name}: {exc}") from None


def operation_fields(kind: str) -> list[FieldSpec]:
    """The fields of a kind's params (name, type, default, bounds, choices, help) for forms and CLI options."""
    return describe(get_operation(kind).params)


def operation_descriptions() -> dict[str, str]:
    """{kind: one-line description} of every operation: built-in ones in pipeline order, then plugins."""
    return {name: op.description for name, op in operations().items()}


def reference_choices(ref: str | None) -> list[str] | None:
    """The values a reference field can take when they form a short list (strategies, presets), else None."""
    if ref == "strategy":
        from segloop.selectors.registry import strategies

        return sorted(strategies())
    if ref == "preset":
        return preset_names()
    return None


def _project_id(session: Session, params: Any, fallback: str | None) -> int | None:
    """The id of the job's project: the params' (created first for an ingest), else `fallback` (created if new)."""
    name = getattr(params, "project", None)
    field = next((f for f in dataclasses.fields(params) if f.name == "project"), None)
    if name is None:
        return projects.get_or_create_project(session, fallback).id if fallback else None
    if field is not None and rules_of(field).ref == "new_project":
        return projects.get_or_create_project(session, name).id
    return projects.get_project(session, name).id


def _project(session: Session, name: str, params: Any) -> None:
    """The project exists."""
    projects.get_project(session, name)


def _new_project(session: Session, name: str, params: Any) -> None:
    """The name can be a project's."""
    projects.validate_project_name(name)


def _paths(session: Session, paths: list[str], params: Any) -> None:
    """Every path exists."""
    for path in paths:
        _path(session, path, params)


def _path(session: Session, path: str, params: Any) -> None:
    """The file or folder exists."""
    if not Path(path).expanduser().exists():
        raise NotFoundError(f"{path} does not exist")


def _folder(session: Session, path: str, params: Any) -> None:
    """The folder exists."""
    if not Path(path).expanduser().is_dir():
        raise NotFoundError(f"{path} is not a folder")


def _weights(session: Session, path: str, params: Any) -> None:
    """A weights file, or a `segloop pretrain --out` folder holding its teacher backbone."""
    from segloop.platform.services.checkpoints import local_weights

    local_weights(path)


def _random_init(session: Session, random_init: bool, params: Any) -> None:
    """A random-init request names no checkpoint."""
    if random_init and getattr(params, "checkpoint_id", None) is not None:
        raise ValidationError("random init and checkpoint_id exclude each other: drop one")


def _video_ids(session: Session, video_ids: list[int], params: Any) -> None:
    """Every video exists (in the params' project, when they name one)."""
    project = getattr(params, "project", None)
    project_id = projects.get_project(session, project).id if project else None
    for video_id in video_ids:
        video = footage.get_video(session, video_id)
        if project_id is not None and video.project_id != project_id:
            raise ValidationError(f"video {video_id} is not in project {project!r}")


def _checkpoint(session: Session, checkpoint_id: int, kind: str) -> None:
    """The checkpoint exists, is of a kind the field needs ('vss|vos': either), and has its file."""
    artifacts.usable_checkpoint(session, checkpoint_id, tuple(kind.split("|")))


def _project_checkpoint(session: Session, kind: str, params: Any) -> None:
    """Left empty, a VSS or VOS checkpoint field takes the project's newest, so the project must have one (an empty
    pretrained-encoder field may fall back to random init, and the result says so)."""
    kinds = tuple(kind.split("|"))
    project = getattr(params, "project", None)
    if kinds == ("pretrain",) or not project:
        return
    try:
        project_id = projects.get_project(session, project).id
    except NotFoundError:
        return  # the project field's own check names it
    if not any(artifacts.list_checkpoints(session, project_id, k) for k in kinds):
        raise ValidationError(f"project {project!r} has no {' or '.join(k.upper() for k in kinds)} checkpoint yet: "
                              "train one first, or give the id of another project's")


def _embedding_set(session: Session, embedding_set_id: int, params: Any) -> None:
    """The embedding set exists (in the params' project, when they name one)."""
    embedding_set = artifacts.get_embedding_set(session, embedding_set_id)
    project = getattr(params, "project", None)
    if project and embedding_set.project_id != projects.get_project(session, project).id:
        raise ValidationError(f"embedding set {embedding_set_id} is not in project {project!r}")


def _preset(session: Session, name: str, params: Any) -> None:
    """The pretraining preset file exists."""
    preset_path(name)


def _pretrain_config(session: Session, overrides: dict, params: Any) -> None:
    """The preset with the overrides and explicit fields is a valid pretraining config."""
    get_backbone(pretrain_config(params).model.backbone)


def _strategy(session: Session, name: str, params: Any) -> None:
    """The selection strategy is registered."""
    from segloop.selectors.registry import get_strategy

    get_strategy(name)


def _time_range(session: Session, values: list[float], params: Any) -> None:
    """Empty, or START <= END in finite seconds: the constraints the params describe can be built."""
    from segloop.platform.services.selection import constraints_of

    try:
        constraints_of(params)
    except ValueError as exc:
        raise ValidationError(str(exc).removeprefix("time_range: ")) from None


def _strategy_params(session: Session, values: dict, params: Any) -> None:
    """The parameters suit the params' strategy (names, types, limits); a `video_id` is a video of the project."""
    from segloop.selectors.registry import check_params

    check_params(params.strategy, values)
    if values.get("video_id") is not None:
        _video_ids(session, [values["video_id"]], params)


DEFAULT_CHECKS: dict[str, Callable] = {"checkpoint": _project_checkpoint}  # for reference fields left empty

REFERENCE_CHECKS: dict[str, Callable] = {
    "project": _project, "new_project": _new_project, "paths": _paths, "path": _path, "folder": _folder,
    "weights": _weights, "random_init": _random_init,
    "video_ids": _video_ids, "checkpoint": _checkpoint, "embedding_set": _embedding_set, "preset": _preset,
    "pretrain_config": _pretrain_config, "strategy": _strategy, "strategy_params": _strategy_params,
    "time_range": _time_range,
}
