"""The Jobs page (Streamlit AppTest on a real database): forms derived from each kind's params spec refuse bad
values naming the field, queue good ones, and a failed job shows its one-line error before its log
(one form test per kind: test_forms.py)."""
from __future__ import annotations

from streamlit.testing.v1 import AppTest

from segloop.platform.db.engine import session_scope
from segloop.platform.db.stores import jobs as job_store
from segloop.platform.services import jobs as job_service

from .conftest import page_script


def jobs_page() -> AppTest:
    """The Jobs page, run once without exceptions."""
    app = AppTest.from_string(page_script("jobs"), default_timeout=60).run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def submit(app: AppTest, kind: str) -> AppTest:
    """Press a kind's queue button."""
    app.button(key=f"FormSubmitter:jobs_{kind}_form-Queue {kind} job").click().run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def all_jobs(engine) -> list:
    """Every job row."""
    with session_scope(engine) as session:
        return job_store.list_jobs(session)


def test_every_kind_has_a_form_with_its_spec_defaults(engine) -> None:
    """One form per operation; each field's widget starts at the spec's default."""
    app = jobs_page()
    for kind in job_service.operation_descriptions():
        assert app.button(key=f"FormSubmitter:jobs_{kind}_form-Queue {kind} job") is not None
    assert app.number_input(key="jobs_finetune_vss_epochs").value == 30
    assert app.number_input(key="jobs_finetune_vss_lr").value == 2e-3
    assert app.selectbox(key="jobs_finetune_vss_backbone").value == "vit_tiny_patch16_224"
    assert app.selectbox(key="jobs_pretrain_preset").value == "cpu_10min_vit_tiny.yaml"


def test_forms_work_on_the_project_chosen_at_the_top(engine, footage_project) -> None:
    """With two projects, the page's project picker sets every form's project and its video choices."""
    from segloop.platform.db.stores import projects

    with session_scope(engine) as session:
        projects.get_or_create_project(session, "empty")
    app = jobs_page()
    app.selectbox(key="jobs_project").set_value("ui").run()
    assert app.text_input(key="jobs_embed_project").value == "ui"
    assert len(app.multiselect(key="jobs_propagate_video_ids").options) == 2
    app.selectbox(key="jobs_project").set_value("empty").run()
    assert app.text_input(key="jobs_embed_project").value == "empty"
    assert app.multiselect(key="jobs_propagate_video_ids").options == []


def test_failed_job_shows_its_message_first_and_the_log_collapsed(engine, settings) -> None:
    """A failed job's one-line error is shown as an error; the log tail sits in a collapsed expander."""
    log = settings.logs_dir / "job-1.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("Traceback (most recent call last):\n  File 'x.py'\nRuntimeError: boom\n")
    with session_scope(engine) as session:
        job = job_store.submit_job(session, "map2d", {"embedding_set_id": 1})
        claim = job_store.Claim.of(job_store.claim_next_job(session, "w"))
        job_store.set_log_path(session, job.id, str(log))
        job_store.fail_job(session, claim, "map2d job failed: boom\nmore", retryable=True)
    app = jobs_page()
    assert [e.value for e in app.error] == ["map2d job failed: boom"]
    log_section = [x for x in app.expander if x.label.startswith("Log")]
    assert len(log_section) == 1 and "(with the traceback)" in log_section[0].label
    assert "RuntimeError: boom" in log_section[0].code[0].value


def test_forms_queue_pipeline_kinds_with_their_defaults(engine, footage_project) -> None:
    """Pretrain, embed and select queue with the spec's defaults in the chosen project; propagate with a video id."""
    app = jobs_page()
    for kind in ("pretrain", "embed", "select"):
        submit(app, kind)
        assert not app.error, [e.value for e in app.error]
    app.multiselect(key="jobs_propagate_video_ids").select(footage_project.video_ids[0])
    submit(app, "propagate")
    queued = {j.kind: j.params for j in all_jobs(engine)}
    assert sorted(queued) == ["embed", "pretrain", "propagate", "select"]
    assert (queued["pretrain"]["preset"], queued["pretrain"]["project"]) == ("cpu_10min_vit_tiny.yaml", "ui")
    assert (queued["embed"]["backbone"], queued["embed"]["checkpoint_id"]) == ("vit_tiny_patch16_224", None)
    assert (queued["select"]["strategy"], queued["select"]["budget"]) == ("kcenter", 10)
    assert queued["propagate"]["video_ids"] == [footage_project.video_ids[0]]
    assert {j.status for j in all_jobs(engine)} == {"queued"}


def test_plugin_kind_gets_a_form_from_its_params(engine, monkeypatch) -> None:
    """A job kind of a plugin (SEGLOOP_JOB_PLUGINS) gets its form from its own params dataclass."""
    from pathlib import Path

    monkeypatch.setenv("SEGLOOP_JOB_PLUGINS", str(Path(__file__).resolve().parents[1] / "job_plugins.py"))
    app = jobs_page()
    assert app.number_input(key="jobs_test-sleep_steps").value == 4
    app.number_input(key="jobs_test-sleep_seconds").set_value(0.5)
    submit(app, "test-sleep")
    [job] = all_jobs(engine)
    assert (job.kind, job.params) == ("test-sleep", {"seconds": 0.5, "steps": 4, "marker": None, "resume": True,
                                                     "fail_on_stop": False})
