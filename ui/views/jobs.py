"""Jobs page: a form per job kind derived from its params spec, the queue live, a job's error, cancel or retry.

Each form's fields, defaults, choices and help come from the operation's params dataclass; what the form
sends is checked by `services.jobs.submit_job` (the same check as the CLI), so a bad value is refused with
the field named and nothing is queued.
"""
from __future__ import annotations

import json
from typing import Any

import streamlit as st

from segloop.platform.core.specs import FieldSpec
from segloop.platform.services import jobs as job_service
from segloop.platform.services import library, uploads
from segloop.ui import resources

REFRESH_SECONDS = 2.0
ACTIVE = ("queued", "running")


def render() -> None:
    """Draw the page."""
    st.title("Jobs")
    for kind, description in job_service.operation_descriptions().items():
        kind_form(kind, description)
    jobs = library.recent_jobs(resources.engine())
    if not jobs:
        st.info("No jobs yet. Launch one above (or with `segloop jobs submit`) and run `segloop worker`.")
        return
    pending = any(j.status in ACTIVE for j in jobs)
    st.fragment(job_board, run_every=REFRESH_SECONDS if pending else None)(pending)


def kind_form(kind: str, description: str) -> None:
    """A form of one job kind: one widget per params field, its defaults from the spec; queues on submit."""
    article = "an" if kind[:1] in "aeiou" else "a"
    with st.expander(f"Launch {article} {kind} job", expanded=False):
        st.caption(description)
        with st.form(f"jobs_{kind}_form"):
            values = {spec.name: field_widget(kind, spec) for spec in job_service.operation_fields(kind)}
            submitted = st.form_submit_button(f"Queue {kind} job", type="primary")
        if submitted:
            queue(kind, {name: value for name, value in values.items() if value is not None})


def field_widget(kind: str, spec: FieldSpec) -> Any:
    """The widget of one params field; returns its value as JSON (None: the spec's default)."""
    key, label, help_text = f"jobs_{kind}_{spec.name}", spec.name.replace("_", " ").capitalize(), spec.help or None
    choices = list(spec.rules.choices) if spec.rules.choices is not None else job_service.reference_choices(
        spec.rules.ref)
    if spec.rules.ref == "project":
        choices = project_names()
    if spec.kind == "bool":
        return st.checkbox(label, value=bool(spec.default), key=key, help=help_text)
    if choices:
        options = ([None] if spec.optional else []) + choices
        index = options.index(spec.default) if spec.default in options else 0
        default_label = "(the project's newest)" if spec.rules.ref == "checkpoint:pretrain" else "(default)"
        return st.selectbox(label, options, index=index, key=key, help=help_text,
                            format_func=lambda v: default_label if v is None else str(v))
    if spec.kind in ("int", "float") and not spec.optional and not spec.required:
        return st.number_input(label, value=spec.default, step=1 if spec.kind == "int" else None, key=key,
                               help=help_text, format=None if spec.kind == "int" else "%g")
    default = form_default(kind, spec)
    if spec.kind in ("list", "tuple"):
        text = st.text_area(label, value="\n".join(map(str, default or [])), key=key, help=f"{help_text} One a line.")
        return [_scalar(part, spec.item_kind) for part in text.replace(",", "\n").splitlines() if part.strip()]
    if spec.kind == "dict":
        text = st.text_input(label, value=json.dumps(default or {}), key=key, help=f"{help_text} A JSON object.")
        return _json(text)
    text = st.text_input(label, value="" if default is None else str(default), key=key, help=help_text)
    return _scalar(text, spec.kind) if text.strip() else None


def form_default(kind: str, spec: FieldSpec) -> Any:
    """A field's prefilled value: the spec's default, or footage found on this machine for an ingest's paths."""
    if kind == "ingest" and spec.name == "paths":
        return uploads.default_ingest_paths(resources.settings())
    return spec.default


def _scalar(text: str, kind: str | None) -> Any:
    """A typed-in value as the field's type when it reads as one (else the text, which the spec check refuses)."""
    text = text.strip()
    if kind in ("int", "float"):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _json(text: str) -> Any:
    """A JSON value typed in (else the text, which the spec check refuses naming the field)."""
    try:
        return json.loads(text or "{}")
    except ValueError:
        return text


def queue(kind: str, params: dict) -> None:
    """Submit a job from a form and say what happened (a refused value is named, nothing is queued)."""
    try:
        job = job_service.submit_job(resources.engine(), kind, params)
    except (ValueError, LookupError) as exc:
        st.error(str(exc))
    else:
        resources.forget_reads()
        st.success(f"Queued {kind} job {job.id}. A running `segloop worker` picks it up.")


def project_names() -> list[str]:
    """Existing project names ('default' when there is none yet)."""
    return [s.project.name for s in resources.project_summaries(resources.settings().db_url)] or ["default"]


def job_board(pending: bool) -> None:
    """The newest jobs with live progress, and the chosen job's details (a self-refreshing fragment)."""
    engine = resources.engine()
    jobs = library.recent_jobs(engine)
    if pending and not any(j.status in ACTIVE for j in jobs):
        resources.forget_reads()
        st.rerun()
    st.dataframe(
        [{"id": j.id, "kind": j.kind, "status": j.status, "progress": j.progress, "message": j.message,
          "attempts": j.attempts, "created": j.created_at.strftime("%Y-%m-%d %H:%M:%S"), "error": j.error or ""}
         for j in jobs],
        hide_index=True,
        column_config={"progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0)},
    )
    by_id = {j.id: j for j in jobs}
    chosen = st.selectbox("Job", list(by_id), key="jobs_selected",
                          format_func=lambda i: f"job {i} · {by_id[i].kind} · {by_id[i].status}")
    if chosen is not None:
        job_detail(by_id[chosen])


def job_detail(job) -> None:
    """The job's error first, then progress, cancel / retry, parameters, result; the log (with any traceback)
    only in a collapsed section."""
    engine = resources.engine()
    if job.error:
        st.error(job.error)
    st.progress(job.progress, text=f"job {job.id} · {job.status} · {job.progress:.0%} · {job.message}")
    cancel_col, retry_col, _ = st.columns([1, 1, 4])
    if cancel_col.button("Cancel job", key=f"jobs_cancel_{job.id}", disabled=job.status not in ACTIVE):
        act(lambda: library.cancel_job(engine, job.id), "cancel requested")
    if retry_col.button("Retry job", key=f"jobs_retry_{job.id}", disabled=job.status not in ("failed", "cancelled")):
        act(lambda: library.retry_job(engine, job.id), "queued again")
    left, right = st.columns(2)
    left.caption("Parameters")
    left.code(json.dumps(job.params, indent=2), language="json")
    right.caption("Result")
    right.code(json.dumps(job.result, indent=2), language="json")
    with st.expander("Log" + (" (with the traceback)" if job.error else ""), expanded=False):
        st.code(library.job_log_tail(resources.settings().data_dir, job) or "(empty)", language="text")


def act(action, done: str) -> None:
    """Run a cancel / retry and rerun the page, or show why it was refused."""
    try:
        job = action()
    except (ValueError, LookupError) as exc:
        st.error(str(exc))
        return
    st.toast(f"job {job.id}: {done} ({job.status})")
    st.rerun()
