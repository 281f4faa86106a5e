"""Stale or mismatched state outside the Label page (issue 13's list), each reproduced through the pages
(Streamlit AppTest on a real database, the entry file where navigation matters)."""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

import segloop.ui
from segloop.platform.db.engine import session_scope
from segloop.platform.db.stores import jobs as job_store

from .conftest import page_script

APP = str(Path(segloop.ui.__file__).parent / "app.py")
TIMEOUT = 60


def page(name: str) -> AppTest:
    """An AppTest of one page, run once, that raised nothing."""
    return ok(AppTest.from_string(page_script(name), default_timeout=TIMEOUT).run())


def ok(app: AppTest) -> AppTest:
    """The app after a run that raised nothing."""
    assert not app.exception, [e.value for e in app.exception]
    return app


def test_jobs_selector_says_cancel_requested_after_cancelling_a_running_job(engine) -> None:
    """Cancelling a running job: the selector, the table and the progress line say so at once (the job keeps
    status 'running' until its worker stops), and Cancel is not offered twice."""
    with session_scope(engine) as session:
        job = job_store.submit_job(session, "map2d", {"embedding_set_id": 1})
        job_store.claim_next_job(session, "w")
    app = page("jobs")
    assert app.selectbox(key="jobs_selected").options == [f"job {job.id} · map2d · running"]
    ok(app.button(key=f"jobs_cancel_{job.id}").click().run())
    assert app.selectbox(key="jobs_selected").options == [f"job {job.id} · map2d · running · cancel requested"]
    assert app.dataframe[0].value["status"].tolist() == ["running · cancel requested"]
    assert app.button(key=f"jobs_cancel_{job.id}").disabled


def test_jobs_selector_follows_a_cancelled_queued_job(engine) -> None:
    """Cancelling a queued job: the selector shows it cancelled and Retry is offered."""
    with session_scope(engine) as session:
        job = job_store.submit_job(session, "map2d", {"embedding_set_id": 1})
    app = page("jobs")
    ok(app.button(key=f"jobs_cancel_{job.id}").click().run())
    assert app.selectbox(key="jobs_selected").options == [f"job {job.id} · map2d · cancelled"]
    assert not app.button(key=f"jobs_retry_{job.id}").disabled


def test_a_queued_job_becomes_the_shown_one(engine, footage_project) -> None:
    """With an older job shown, queueing a new one from a form shows the new one."""
    with session_scope(engine) as session:
        older = job_store.submit_job(session, "map2d", {"embedding_set_id": 1})
    app = page("jobs")
    assert app.selectbox(key="jobs_selected").value == older.id
    ok(app.button(key="FormSubmitter:jobs_pretrain_form-Queue pretrain job").click().run())
    with session_scope(engine) as session:
        newest = job_store.list_jobs(session)[0]
    assert newest.id != older.id and newest.kind == "pretrain"
    assert app.selectbox(key="jobs_selected").value == newest.id
