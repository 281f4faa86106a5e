"""Upload page: drop videos or zip archives of DAVIS-layout folders; each becomes an ingest job with live progress."""
from __future__ import annotations

import streamlit as st

from segloop.platform.services import library, uploads
from segloop.platform.services.library import JobInfo
from segloop.ui import resources, signin
from segloop.ui.literal import literal

LIMITS = uploads.UploadLimits()
REFRESH_SECONDS = 1.5


def render() -> None:
    """Draw the page."""
    st.title("Upload")
    engine = resources.engine()
    summaries = resources.project_summaries(resources.settings().db_url)
    names = [s.project.name for s in summaries]
    with st.container(border=True):
        left, right = st.columns([2, 1])
        project = left.selectbox("Project", names + ["➕ new project"], key="upload_project") if names else None
        if project is None or project == "➕ new project":
            project = left.text_input("New project name", value="default", key="upload_new_project")
        fps = right.number_input("Sample fps (0 = every frame)", min_value=0.0, value=0.0, step=1.0, key="upload_fps")
        max_side = right.number_input("Max side in px (0 = keep size)", min_value=0, value=0, step=32,
                                      key="upload_max_side")
        nonce = st.session_state.setdefault("upload_nonce", 0)
        files = st.file_uploader(
            "Videos or .zip archives of DAVIS-layout folders",
            type=[e.lstrip(".") for e in uploads.UPLOAD_EXTENSIONS], accept_multiple_files=True,
            key=f"upload_files_{nonce}", max_upload_size=LIMITS.max_bytes // (1024 * 1024),
        )
        if st.button("Ingest uploaded files", type="primary", disabled=not files, key="upload_go"):
            request = uploads.IngestRequest(project=project, fps=fps or None, max_side=int(max_side) or None)
            try:
                named_bytes = ((f.name, f.getvalue()) for f in files)
                outcomes = uploads.upload_and_queue(engine, resources.settings(), named_bytes, request, LIMITS)
            except ValueError as exc:
                st.error(literal(exc))
            else:
                st.session_state.setdefault("upload_outcomes", []).extend(outcomes)
                st.session_state["upload_nonce"] = nonce + 1
                resources.forget_reads()
                st.rerun()
    outcomes: list[uploads.UploadOutcome] = st.session_state.get("upload_outcomes", [])
    if outcomes:
        st.subheader("This session's uploads")
        job_ids = [o.job_id for o in outcomes if o.job_id]
        pending = any(j.status in ("queued", "running") for j in library.jobs_by_id(engine, job_ids))
        signin.fragment(upload_progress, engine, REFRESH_SECONDS if pending else None)(outcomes, pending)
    st.subheader("Projects and videos")
    project_tables(summaries)


def upload_progress(outcomes: list[uploads.UploadOutcome], pending: bool) -> None:
    """One line per uploaded file: its ingest job's progress, or why it was refused (a self-refreshing fragment)."""
    jobs = {j.id: j for j in library.jobs_by_id(resources.engine(), [o.job_id for o in outcomes if o.job_id])}
    if pending and not any(j.status in ("queued", "running") for j in jobs.values()):
        resources.forget_reads()
        st.rerun()
    for outcome in reversed(outcomes):
        if outcome.error:
            st.error(f"**{literal(outcome.name)}** refused: {literal(outcome.error)}")
            continue
        job = jobs.get(outcome.job_id)
        if job is None:
            st.warning(f"**{literal(outcome.name)}**: job {outcome.job_id} no longer exists")
            continue
        st.progress(job.progress, text=job_line(outcome.name, job))
        if job.status == "failed":
            st.error(f"**{literal(outcome.name)}** failed: {literal(job.error)}")
        for skipped in (job.result or {}).get("skipped", []) if job.status == "succeeded" else []:
            st.info(f"**{literal(outcome.name)}** added nothing: {literal(skipped)}")


def job_line(name: str, job: JobInfo) -> str:
    """A one-line status of a file's ingest job (Markdown: a progress bar's text)."""
    queued = job.status == "queued"
    detail = "waiting for a worker (run `segloop worker`)" if queued else literal(job.message, one_line=True)
    return f"{literal(name, one_line=True)} · job {job.id} · {job.status} · {job.progress:.0%} · {detail}"


def project_tables(summaries: list[library.ProjectSummary]) -> None:
    """The projects with their counts, and each project's videos."""
    if not summaries:
        st.info("No projects yet: upload footage above.")
        return
    resources.project_counts_table(summaries)
    for summary in summaries:
        with st.expander(f"{literal(summary.project.name, one_line=True)}: {summary.videos} video(s)"):
            rows = library.video_summaries(resources.engine(), summary.project.id)
            if rows:
                st.dataframe(rows, hide_index=True)
            else:
                st.caption("No videos yet.")
