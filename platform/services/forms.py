"""Job forms derived from the params specs: one field per params field, with its widget, bounds, default and the
choices a person picks from (projects, videos, checkpoints with date, kind and score, embedding sets, presets).

The Jobs page draws these fields; what it sends back goes through `services.jobs.submit_job`, the same check as
the CLI, so a value the widgets cannot bound (a path, a JSON object, a keyframe list) is refused with the field named.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from segloop.platform.core.errors import NotFoundError
from segloop.platform.core.specs import FieldSpec, parse_json
from segloop.platform.db.engine import session_scope
from segloop.platform.db.stores import artifacts, footage, projects
from segloop.platform.services import jobs as job_service
from segloop.platform.services.checkpoints import checkpoint_summaries
from segloop.platform.services.models import project_encoder

CHECKBOX, SELECT, MULTISELECT, NUMBER, TEXT, LINES, JSON_TEXT, PROJECT, NEW_PROJECT = (
    "checkbox", "select", "multiselect", "number", "text", "lines", "json", "project", "new_project")
@dataclass(frozen=True)
class FormField:
    """One widget of a job form: what it edits, how it is drawn, where it starts and what it may hold."""

    name: str
    label: str
    help: str
    widget: str
    default: Any
    options: tuple = ()
    option_labels: dict = field(default_factory=dict)
    min_value: float | None = None
    max_value: float | None = None
    integer: bool = False
    numeric: bool = False  # a LINES field whose items are numbers
    optional: bool = False

    def shown(self, value: Any) -> str:
        """How an option is shown in a picker."""
        return self.option_labels.get(value, str(value))


def job_form(engine: Engine, kind: str, project: str | None) -> list[FormField]:
    """The fields of a kind's form for `project` (the page's project: its videos, checkpoints and sets)."""
    project_id = _project_id(engine, project)
    return [form_field(engine, kind, spec, project, project_id) for spec in job_service.operation_fields(kind)]


def form_field(engine: Engine, kind: str, spec: FieldSpec, project: str | None, project_id: int | None
               ) -> FormField:
    """The widget of one params field, its default and choices."""
    label = spec.name.replace("_", " ").capitalize()
    base = dict(name=spec.name, label=label, help=spec.help, optional=spec.optional)
    ref, argument = (spec.rules.ref or "").partition(":")[::2]
    if ref == "project":
        return FormField(**base, widget=PROJECT, default=project)
    if ref == "new_project":
        return FormField(**base, widget=NEW_PROJECT, default=project or spec.default)
    if ref == "checkpoint":
        return _checkpoint_field(engine, kind, spec, base, project, project_id, argument)
    if ref == "embedding_set":
        return _embedding_set_field(engine, spec, base, project_id)
    if ref == "video_ids":
        return _video_field(engine, spec, base, project_id)
    choices = list(spec.rules.choices) if spec.rules.choices is not None else job_service.reference_choices(ref)
    if spec.kind == "bool":
        return FormField(**base, widget=CHECKBOX, default=bool(spec.default))
    if choices:
        options = tuple(([None] if spec.optional else []) + list(choices))
        return FormField(**base, widget=SELECT, default=spec.default if spec.default in options else options[0],
                         options=options, option_labels={None: "(default)"})
    if spec.kind in ("int", "float"):
        rules = spec.rules  # an exclusive bound is checked on submit, naming the field
        return FormField(**base, widget=NUMBER, default=spec.default,
                         min_value=None if rules.min_exclusive else rules.min,
                         max_value=None if rules.max_exclusive else rules.max, integer=spec.kind == "int")
    if spec.kind in ("list", "tuple"):
        return FormField(**base, widget=LINES, default=list(spec.default or []), integer=spec.item_kind == "int",
                         numeric=spec.item_kind in ("int", "float"))
    if spec.kind == "dict":
        return FormField(**base, widget=JSON_TEXT, default=spec.default or {})
    return FormField(**base, widget=TEXT, default=spec.default)


def _project_id(engine: Engine, project: str | None) -> int | None:
    """The id of a project by name (None when there is no such project yet)."""
    if not project:
        return None
    with session_scope(engine) as session:
        try:
            return projects.get_project(session, project).id
        except (NotFoundError, LookupError):
            return None


def _checkpoint_field(engine: Engine, kind: str, spec: FieldSpec, base: dict, project: str | None,
                      project_id: int | None, checkpoint_kind: str) -> FormField:
    """A checkpoint picker (date, kind, backbone, job, score); an encoder field starts at the project's own."""
    kinds = tuple(checkpoint_kind.split("|"))  # "pretrain", "vss", "vss|vos"
    found = checkpoint_summaries(engine, project_id, kinds) if project_id is not None else []
    labels = {s.info.id: s.label for s in found}
    default = found[0].info.id if found else None
    if kinds == ("pretrain",) and project_id is not None:
        choice = project_encoder(project, None, None, "", engine)
        default = choice.checkpoint_id
        labels[None] = ("(the project's newest pretrained encoder when the job runs)" if found
                        else "(none: the project has no pretrained encoder, so a random-init backbone)")
    else:
        labels[None] = "(choose one)" if spec.required else "(the project's newest when the job runs)"
    options = tuple(([None] if spec.optional or not found else []) + list(s.info.id for s in found))
    return FormField(**base, widget=SELECT, default=default, options=options, option_labels=labels)


def _embedding_set_field(engine: Engine, spec: FieldSpec, base: dict, project_id: int | None) -> FormField:
    """An embedding set picker of the project, newest first."""
    with session_scope(engine) as session:
        sets = artifacts.list_embedding_sets(session, project_id) if project_id is not None else []
    labels = {s.id: f"{s.id}: {s.backbone} · {s.count} frames · {s.created_at:%Y-%m-%d %H:%M}" for s in sets}
    labels[None] = "(the project's newest)" if spec.optional else "(none: embed the project first)"
    options = tuple(([None] if spec.optional or not sets else []) + [s.id for s in sets])
    default = None if spec.optional or not sets else sets[0].id
    return FormField(**base, widget=SELECT, default=default, options=options, option_labels=labels)


def _video_field(engine: Engine, spec: FieldSpec, base: dict, project_id: int | None) -> FormField:
    """A multi-picker of the project's videos."""
    with session_scope(engine) as session:
        videos = footage.list_videos(session, project_id) if project_id is not None else []
    labels = {v.id: f"{v.name} ({v.frame_count} frames)" for v in videos}
    return FormField(**base, widget=MULTISELECT, default=[], options=tuple(labels), option_labels=labels)


def lines_value(text: str, numeric: bool) -> list:
    """A one-item-a-line (or comma-separated) text as a list; numbers where the field holds numbers."""
    parts = [part.strip() for part in text.replace(",", "\n").splitlines() if part.strip()]
    return [_number(part) if numeric else part for part in parts]


def json_value(text: str) -> Any:
    """A JSON text as its value (the text itself when it is not JSON: the spec check refuses it by name)."""
    try:
        return parse_json(text or "{}")
    except ValueError:
        return text


def _number(text: str) -> Any:
    """A typed number as int/float (else the text, refused by the spec check naming the field)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def form_params(fields: list[FormField], values: dict[str, Any]) -> dict[str, Any]:
    """The params a form sends: its values, leaving out optional fields left empty (their spec default)."""
    by_name = {f.name: f for f in fields}
    sent = {}
    for name, value in values.items():
        if value is None or (value == "" and by_name[name].widget == TEXT):
            continue
        sent[name] = value
    return sent
