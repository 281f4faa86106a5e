"""Jobs page: launch an ingest job, follow the queue live, read a job's log, cancel or retry it."""
from __future__ import annotations

import json

import streamlit as st

from segloop.platform.db.entities import JobInfo
from segloop.platform.media import uploads
from segloop.platform.services import library
from segloop.ui import resources

REFRESH_SECONDS = 2.0
ACTIVE = ("queued", "running")


DEDICATED_FORMS = ("ingest", "pretrain", "embed", "select", "propagate", "map2d")


def render() -> None:
    """Draw the page."""
    st.title("Jobs")
    ingest_form()
    pretrain_form()
    embed_form()
    select_form()
    propagate_form()
    other_kinds_form()
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


def queue(kind: str, params: dict, project: str | None) -> None:
    """Submit a job from a form and say what happened."""
    try:
        job = library.submit_job(resources.engine(), kind, params, project)
    except ValueError as exc:
        st.error(str(exc))
    else:
        st.success(f"Queued {kind} job {job.id}. A running `segloop worker` picks it up.")


def project_names() -> list[str]:
    """Existing project names ('default' when there is none yet)."""
    return [s.project.name for s in resources.project_summaries(resources.settings().db_url)] or ["default"]


def pretrain_form() -> None:
    """A form that queues self-supervised pretraining on a project (the 10-minute CPU preset by default)."""
    with st.expander("Launch a pretrain job", expanded=False):
        with st.form("jobs_pretrain_form"):
            left, middle, right = st.columns(3)
            project = left.selectbox("Project", project_names(), key="jobs_pretrain_project")
            minutes = middle.number_input("Time limit in minutes (0 = preset's)", min_value=0.0, value=0.0,
                                          key="jobs_pretrain_minutes")
            steps = right.number_input("Steps (0 = preset's)", min_value=0, value=0, key="jobs_pretrain_steps")
            preset = st.text_input("Preset (a file in segloop/pretrain/configs)", value="cpu_10min_vit_tiny.yaml",
                                   key="jobs_pretrain_preset")
            submitted = st.form_submit_button("Queue pretrain job", type="primary")
        if submitted:
            queue("pretrain", {"project": project, "preset": preset.strip() or None,
                               "max_minutes": minutes or None, "steps": int(steps) or None}, project)


def embed_form() -> None:
    """A form that queues embedding a project's frames (random-init or a checkpoint)."""
    with st.expander("Launch an embed job", expanded=False):
        with st.form("jobs_embed_form"):
            left, middle, right = st.columns(3)
            project = left.selectbox("Project", project_names(), key="jobs_embed_project")
            checkpoint = middle.number_input("Checkpoint id (0 = random init)", min_value=0, value=0,
                                             key="jobs_embed_checkpoint")
            backbone = right.text_input("Backbone", value="vit_small_patch16_224", key="jobs_embed_backbone")
            size_col, batch_col, vector_col = st.columns(3)
            img_size = size_col.number_input("Image size", min_value=32, max_value=1024, value=224, step=32,
                                             key="jobs_embed_size")
            batch = batch_col.number_input("Batch size", min_value=1, value=32, key="jobs_embed_batch")
            vector = vector_col.selectbox("Vector", ("cls", "patch_mean"), key="jobs_embed_vector")
            submitted = st.form_submit_button("Queue embed job", type="primary")
        if submitted:
            queue("embed", {"project": project, "checkpoint_id": int(checkpoint) or None, "backbone": backbone,
                            "img_size": int(img_size), "batch_size": int(batch), "vector": vector}, project)


def select_form() -> None:
    """A form that queues a selection run (the Select page runs small ones inline and reviews them)."""
    from segloop.selectors.registry import strategies

    with st.expander("Launch a select job", expanded=False):
        with st.form("jobs_select_form"):
            left, middle, right = st.columns(3)
            project = left.selectbox("Project", project_names(), key="jobs_select_project")
            names = list(strategies())
            strategy = middle.selectbox("Strategy", names, index=names.index("kcenter") if "kcenter" in names else 0,
                                        key="jobs_select_strategy")
            budget = right.number_input("Budget", min_value=1, value=10, key="jobs_select_budget")
            params = st.text_input("Strategy parameters (JSON)", value="{}", key="jobs_select_params")
            submitted = st.form_submit_button("Queue select job", type="primary")
        if submitted:
            try:
                parsed = json.loads(params or "{}")
            except ValueError as exc:
                st.error(f"strategy parameters: not valid JSON ({exc})")
                return
            queue("select", {"project": project, "strategy": strategy, "budget": int(budget), "params": parsed},
                  project)


def propagate_form() -> None:
    """A form that queues mask propagation for videos (by id) from their human-labeled frames."""
    with st.expander("Launch a propagate job", expanded=False):
        with st.form("jobs_propagate_form"):
            left, middle, right = st.columns(3)
            video_ids = left.text_input("Video ids (comma-separated)", value="", key="jobs_propagate_videos")
            method = middle.selectbox("Method", ("backbone", "pixels", "copy"), key="jobs_propagate_method")
            backbone = right.text_input("Backbone", value="vit_small_patch16_224", key="jobs_propagate_backbone")
            keyframes_col, size_col = st.columns(2)
            keyframes = keyframes_col.text_input("Keyframes (empty = every labeled frame; first, uniform:K, 3,17)",
                                                 key="jobs_propagate_keyframes")
            short_side = size_col.number_input("Short side (px)", min_value=32, value=480, step=32,
                                               key="jobs_propagate_size")
            submitted = st.form_submit_button("Queue propagate job", type="primary")
        if submitted:
            try:
                ids = [int(v) for v in video_ids.replace(" ", "").split(",") if v]
            except ValueError:
                st.error(f"video ids: {video_ids!r} is not a comma-separated list of integers")
                return
            queue("propagate", {"video_ids": ids, "method": method, "backbone": backbone,
                                "keyframes": keyframes.strip() or None, "short_side": int(short_side)}, None)


def other_kinds_form() -> None:
    """Any other registered job kind (fine-tune, evaluate, plugins…) with its default parameters as JSON."""
    others = {k: v for k, v in library.job_kind_defaults().items() if k not in DEDICATED_FORMS}
    if not others:
        return
    with st.expander("Launch another kind of job", expanded=False):
        kind_col, project_col = st.columns([3, 1])
        kind = kind_col.selectbox("Kind", list(others), key="jobs_other_kind",
                                  format_func=lambda k: f"{k}: {others[k][0]}")
        defaults = dict(others[kind][1])
        if "project" in defaults:
            defaults["project"] = project_col.selectbox("Project", project_names(), key="jobs_other_project")
        with st.form("jobs_other_form"):
            params = st.text_area("Parameters (JSON, the kind's defaults)", value=json.dumps(defaults, indent=2),
                                  key=f"jobs_other_params_{kind}_{defaults.get('project', '')}", height=220)
            submitted = st.form_submit_button(f"Queue {kind} job", type="primary")
        if submitted:
            try:
                parsed = json.loads(params)
            except ValueError as exc:
                st.error(f"parameters: not valid JSON ({exc})")
                return
            queue(kind, parsed, parsed.get("project") if isinstance(parsed, dict) else None)


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
