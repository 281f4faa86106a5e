"""Jobs page: a form per job kind derived from its params spec, the queue live, a job's error, cancel or retry.

Each form's fields, defaults, choices and help come from the operation's params dataclass; what the form
sends is checked by `services.jobs.submit_job` (the same check as the CLI), so a bad value is refused with
the field named and nothing is queued.
"""
from __future__ import annotations

import json
from typing import Any

import streamlit as st

from segloop.platform.services import forms, library, uploads
from segloop.platform.services import jobs as job_service
from segloop.ui import resources, signin
from segloop.ui.literal import literal

REFRESH_SECONDS = 2.0
ACTIVE = ("queued", "running")
SELECTED = "jobs_selected"


def render() -> None:
    """Draw the page."""
    st.title("Jobs")
    project = page_project()
    for kind, description in job_service.operation_descriptions().items():
        kind_form(kind, description, project)
    jobs = library.recent_jobs(resources.engine())
    if not jobs:
        st.info("No jobs yet. Launch one above (or with `segloop jobs submit`) and run `segloop worker`.")
        return
    pending = any(j.status in ACTIVE for j in jobs)
    signin.fragment(job_board, resources.engine(), REFRESH_SECONDS if pending else None)(pending)


def page_project() -> str | None:
    """The project the forms work on (its videos, checkpoints and embedding sets fill the pickers)."""
    names = project_names()
    if not names:
        st.caption("No project yet: an ingest job creates one.")
        return None
    return st.selectbox("Project", names, key="jobs_project",
                        help="The forms below work on this project: its videos, checkpoints and embedding sets.")


def kind_form(kind: str, description: str, project: str | None) -> None:
    """A form of one job kind: one widget per params field, its defaults and bounds from the spec; queues on submit."""
    article = "an" if kind[:1] in "aeiou" else "a"
    with st.expander(f"Launch {article} {kind} job", expanded=False):
        st.caption(description)
        fields = forms.job_form(resources.engine(), kind, project)
        with st.form(f"jobs_{kind}_form"):
            values = {f.name: field_widget(kind, f) for f in fields}
            submitted = st.form_submit_button(f"Queue {kind} job", type="primary")
        if submitted:
            queue(kind, forms.form_params(fields, values))


def field_widget(kind: str, field: forms.FormField) -> Any:
    """The widget of one form field; returns its value as JSON (None: the spec's default)."""
    key, label, help_text = f"jobs_{kind}_{field.name}", field.label, field.help or None
    if field.widget == forms.PROJECT:
        st.session_state[key] = field.default or ""  # follows the page's project picker
        st.text_input(label, disabled=True, key=key, help="The project chosen at the top of the page.")
        return field.default
    if field.widget == forms.NEW_PROJECT:
        return st.text_input(label, value=field.default or "", key=key, help=help_text).strip() or None
    if field.widget == forms.CHECKBOX:
        return st.checkbox(label, value=bool(field.default), key=key, help=help_text)
    if field.widget in (forms.SELECT, forms.MULTISELECT):
        forget_gone_choice(key, field.options)
        picker = st.selectbox if field.widget == forms.SELECT else st.multiselect
        extra = ({"index": field.options.index(field.default) if field.default in field.options else 0}
                 if field.widget == forms.SELECT else {"default": field.default})
        return picker(label, list(field.options), key=key, help=help_text, format_func=field.shown, **extra)
    if field.widget == forms.NUMBER:
        step = 1 if field.integer else None
        value = field.default if field.default is None or not field.integer else int(field.default)
        return st.number_input(label, value=value, min_value=_bound(field.min_value, field.integer),
                               max_value=_bound(field.max_value, field.integer), step=step, key=key,
                               help=help_text, format=None if field.integer else "%g",
                               placeholder="(default)" if field.optional else None)
    if field.widget == forms.LINES:
        default = field.default or form_default(kind, field.name) or []
        text = st.text_area(label, value="\n".join(map(str, default)), key=key, help=f"{help_text} One a line.")
        return forms.lines_value(text, field.numeric)
    if field.widget == forms.JSON_TEXT:
        return forms.json_value(st.text_input(label, value=json.dumps(field.default), key=key,
                                              help=f"{help_text} A JSON object."))
    text = st.text_input(label, value="" if field.default is None else str(field.default), key=key, help=help_text)
    return text.strip() or None


def forget_gone_choice(key: str, options: tuple) -> None:
    """Drop a picker's remembered choice once it is no longer offered (a job ran, a checkpoint appeared), so the
    picker starts at its default instead of showing a stale value."""
    if key not in st.session_state:
        return
    value = st.session_state[key]
    if isinstance(value, list):
        if any(v not in options for v in value):
            st.session_state[key] = [v for v in value if v in options]
    elif value not in options:
        del st.session_state[key]


def _bound(value: float | None, integer: bool) -> float | int | None:
    """A spec bound as the widget takes it (an int for integer fields)."""
    return None if value is None else (int(value) if integer else float(value))


def form_default(kind: str, name: str) -> Any:
    """A field's prefilled value beyond the spec: footage found on this machine for an ingest's paths."""
    if kind == "ingest" and name == "paths":
        return uploads.default_ingest_paths(resources.settings())
    return None


def queue(kind: str, params: dict) -> None:
    """Submit a job from a form and say what happened (a refused value is named, nothing is queued)."""
    try:
        job = job_service.submit_job(resources.engine(), kind, params)
    except (ValueError, LookupError) as exc:
        st.error(literal(exc))
    else:
        resources.forget_reads()
        st.session_state[SELECTED] = job.id  # the job just queued becomes the one shown below
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
        [{"id": j.id, "kind": j.kind, "status": shown_status(j), "progress": j.progress, "message": j.message,
          "attempts": j.attempts, "created": j.created_at.strftime("%Y-%m-%d %H:%M:%S"), "error": j.error or ""}
         for j in jobs],
        hide_index=True,
        column_config={"progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0)},
    )
    by_id = {j.id: j for j in jobs}
    if st.session_state.get(SELECTED) not in by_id:
        st.session_state.pop(SELECTED, None)
    chosen = st.selectbox("Job", list(by_id), key=SELECTED,
                          format_func=lambda i: f"job {i} · {by_id[i].kind} · {shown_status(by_id[i])}")
    if chosen is not None:
        job_detail(by_id[chosen])


def shown_status(job) -> str:
    """A job's status as a person reads it: a running job asked to stop says so until its worker stops it."""
    if job.status == "running" and job.cancel_requested:
        return "running · cancel requested"
    return job.status


def job_detail(job) -> None:
    """The job's error first, then progress, cancel / retry, parameters, result; the log (with any traceback)
    only in a collapsed section."""
    engine = resources.engine()
    if job.error:
        st.error(literal(job.error))
    st.progress(job.progress, text=f"job {job.id} · {shown_status(job)} · {job.progress:.0%} · "
                                           f"{literal(job.message, one_line=True)}")
    cancel_col, retry_col, _ = st.columns([1, 1, 4])
    cancellable = job.status in ACTIVE and not job.cancel_requested
    if cancel_col.button("Cancel job", key=f"jobs_cancel_{job.id}", disabled=not cancellable):
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
        st.error(literal(exc))
        return
    st.toast(f"job {job.id}: {done} ({job.status})")
    st.rerun()
