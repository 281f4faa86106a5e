"""Jobs page: launch an ingest job, follow the queue live, read a job's log, cancel or retry it."""
from __future__ import annotations

import json

import streamlit as st

from segloop.platform import library, uploads
from segloop.platform.entities import JobInfo
from segloop.ui import resources

REFRESH_SECONDS = 2.0
ACTIVE = ("queued", "running")


def render() -> None:
    """Draw the page."""
    st.title("Jobs")
    ingest_form()
    jobs = library.recent_jobs(resources.engine())
    if not jobs:
        st.info("No jobs yet. Launch one above (or with `segloop jobs submit`) and run `segloop worker`.")
        return
    pending = any(j.status in ACTIVE for j in jobs)
    st.fragment(job_board, run_every=REFRESH_SECONDS if pending else None)(pending)


def ingest_form() -> None:
    """A form that queues an ingest job; its defaults ingest the demo footage into project 'default'."""
    settings = resources.settings()
    with st.expander("Launch an ingest job", expanded=False):
        with st.form("jobs_ingest_form"):
            paths = st.text_area("Files or folders to ingest (one per line)",
                                 value="\n".join(uploads.default_ingest_paths(settings)), key="jobs_ingest_paths")
            left, middle, right = st.columns(3)
            project = left.text_input("Project", value="default", key="jobs_ingest_project")
            fps = middle.number_input("Sample fps (0 = every frame)", min_value=0.0, value=0.0, key="jobs_ingest_fps")
            max_side = right.number_input("Max side in px (0 = keep size)", min_value=0, value=0, step=32,
                                          key="jobs_ingest_max_side")
            submitted = st.form_submit_button("Queue ingest job", type="primary")
        if submitted:
            try:
                checked = uploads.check_ingest_paths(paths.splitlines())
                job = uploads.submit_ingest(resources.engine(), checked, uploads.IngestRequest(
                    project=project, fps=fps or None, max_side=int(max_side) or None))
            except ValueError as exc:
                st.error(str(exc))
            else:
                st.success(f"Queued ingest job {job.id}. A running `segloop worker` picks it up.")


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


def job_detail(job: JobInfo) -> None:
    """Progress, parameters, result, log tail, and cancel / retry for one job."""
    engine = resources.engine()
    st.progress(job.progress, text=f"job {job.id} · {job.status} · {job.progress:.0%} · {job.message}")
    if job.error:
        st.error(job.error)
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
    st.caption(f"Log tail ({job.log_path or 'no log yet'})")
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
