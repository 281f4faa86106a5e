"""Stale or mismatched state outside the Label page (issue 13's list), each reproduced through the pages
(Streamlit AppTest on a real database, the entry file where navigation matters)."""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

import segloop.ui
from segloop.platform.db.engine import session_scope
from segloop.platform.db.stores import footage, selections
from segloop.platform.db.stores import jobs as job_store

from .conftest import page_script
from .test_e2e_browser import browser_env, served  # noqa: F401 (fixtures)

APP = str(Path(segloop.ui.__file__).parent / "app.py")
TIMEOUT = 60


def page(name: str) -> AppTest:
    """An AppTest of one page, run once, that raised nothing."""
    return ok(AppTest.from_string(page_script(name), default_timeout=TIMEOUT).run())


def ok(app: AppTest) -> AppTest:
    """The app after a run that raised nothing."""
    assert not app.exception, [e.value for e in app.exception]
    return app


def open_page(app: AppTest, url_path: str) -> AppTest:
    """The whole app (entry file) switched to the page of `url_path`, as its link in the navigation does
    (AppTest.switch_page only knows file pages; a callable page's id is the hash of its URL path)."""
    from streamlit.util import calc_hash

    app._page_hash = calc_hash(url_path)
    return ok(app.run())


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


def second_project(engine, settings, tmp_path) -> tuple[int, list]:
    """A second project, 'zz', with one small synthetic video: (its id, its frames)."""
    from segloop.platform.db.stores import projects
    from segloop.platform.media.ingest import IngestOptions, ingest_paths
    from segloop.platform.media.synth import SynthOptions, synthesize

    synthesize(tmp_path / "other", SynthOptions(videos=1, frames=6, width=64, height=48, seed=11))
    assert not ingest_paths([tmp_path / "other" / "videos"], IngestOptions(project="zz"), settings).failed
    with session_scope(engine) as session:
        project = projects.get_project(session, "zz")
        [video] = footage.list_videos(session, project.id)
        return project.id, footage.list_frames(session, video.id)


def test_library_label_this_frame_opens_it_under_its_own_project(engine, settings, footage_project, tmp_path) -> None:
    """Library → project 'zz' → View frame #3 → Label this frame: the Label page opens on that frame with the
    project 'zz' and its video's queue, not under the first project's queue."""
    _, frames = second_project(engine, settings, tmp_path)
    app = open_page(ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run()), "library")
    app.selectbox(key="library_project").set_value("zz")
    ok(app.run())
    ok(app.button(key=f"library_view_{frames[3].id}").click().run())
    ok(app.button(key="library_to_label").click().run())
    assert app.selectbox(key="label_project").value == "zz"
    assert app.selectbox(key="label_queue").value == ("video", frames[3].video_id)
    assert app.session_state["label_session"].frame_id == frames[3].id
    assert app.query_params["frame"] == str(frames[3].id)


def test_an_empty_selection_run_is_refused_and_never_becomes_the_queue(engine, footage_project, embedded) -> None:
    """Every frame of a video already picked, then k-center on that video again with min gap 100000: 0 frames →
    an error that names the constraints, and no run stored, so the Label page's queue is not an empty run."""
    app = page("select_frames")
    app.number_input(key="select_budget").set_value(12)
    app.checkbox(key="select_dup").uncheck()
    app.multiselect(key="select_videos").select(footage_project.video_ids[0])
    ok(app.button(key="select_run_go").click().run())
    with session_scope(engine) as session:
        [first] = selections.list_selections(session, footage_project.project_id)
        assert len(selections.selection_items(session, first.id)) == 12
    app.number_input(key="select_gap").set_value(100_000)
    ok(app.button(key="select_run_go").click().run())
    errors = [e.value for e in app.error]
    assert len(errors) == 1 and "picked no frame" in errors[0] and "min_gap_frames 100000" in errors[0], errors
    with session_scope(engine) as session:
        assert [r.id for r in selections.list_selections(session, footage_project.project_id)] == [first.id]


def record_signals(engine, footage_project) -> None:
    """Two per-frame uncertainty signals on every frame of the project."""
    from segloop.platform.db.stores import scores

    with session_scope(engine) as session:
        frames = [f for v in footage_project.video_ids for f in footage.list_frames(session, v)]
        scores.add_frame_scores(session, "vos_fb_disagreement", {f.id: (f.index % 5) / 5 for f in frames})
        scores.add_frame_scores(session, "vss_entropy_mean", {f.id: (f.index % 3) / 3 for f in frames})


def test_uncertainty_and_hybrid_run_with_their_default_signal(engine, footage_project, embedded) -> None:
    """With two recorded signals, `uncertainty` and `hybrid` run on the Select page without naming one: the
    signal picker starts at a recorded signal, and each stores a run of 3 picks ranked by it."""
    record_signals(engine, footage_project)
    app = page("select_frames")
    app.number_input(key="select_budget").set_value(3)
    for strategy in ("uncertainty", "hybrid"):
        ok(app.selectbox(key="select_strategy").select(strategy).run())
        assert app.selectbox(key=f"select_param_{strategy}_signal").value == "vos_fb_disagreement"
        ok(app.button(key="select_run_go").click().run())
        assert not app.error, [e.value for e in app.error]
        with session_scope(engine) as session:
            run = selections.list_selections(session, footage_project.project_id)[0]
            picks = selections.selection_items(session, run.id)
        assert run.strategy == strategy and run.params["signal"] == "vos_fb_disagreement" and len(picks) == 3


def test_every_page_opens_by_its_link_in_a_browser(served) -> None:  # noqa: F811 (the fixture)
    """`segloop ui` in Chromium: /library (and every other page's URL, /home included: the sidebar's Home) opens that
    page, not "Page not found"; the root `/` opens Home at /home."""
    from playwright.sync_api import expect, sync_playwright

    from .test_e2e_browser import CHROMIUM, CHROMIUM_ARGS

    url, _ = served
    titles = {"library": "Library", "": "segloop", "home": "segloop", "upload": "Upload", "explore": "Explore",
              "select": "Select frames to label", "label": "Label", "results": "Results", "jobs": "Jobs"}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        for path, title in titles.items():
            page.goto(f"{url}/{path}")
            expect(page.locator("h1").first).to_have_text(title, timeout=60_000)
            assert "Page not found" not in page.inner_text("body"), path
        page.goto(url)
        expect(page).to_have_url(f"{url}/home", timeout=60_000)
        expect(page.get_by_role("link", name="Home")).to_have_attribute("aria-current", "page")
        browser.close()


def test_tsne_page_waits_for_its_map2d_job_and_shows_the_map(engine, settings, footage_project, embedded) -> None:
    """Queueing the t-SNE map shows the job's progress in place (a fragment polls it every 2 s and reruns the page
    when it has finished); once the worker has finished, the map is on the page without going to the Jobs page."""
    from segloop.platform.services.explore import compute_map

    app = page("explore")
    ok(app.radio(key="explore_method").set_value("tsne").run())
    ok(app.button(key="explore_tsne_go").click().run())
    with session_scope(engine) as session:
        [job] = job_store.list_jobs(session)
    assert any(f"map2d job {job.id} · queued" in p.proto.text for p in app.get("progress"))
    with session_scope(engine) as session:
        claimed = job_store.claim_next_job(session, "w")
    compute_map(embedded, settings, "tsne", job.params["max_points"], 0, perplexity=5.0)
    with session_scope(engine) as session:
        assert job_store.finish_job(session, job_store.Claim.of(claimed), {"points": 24})
    ok(app.run())
    assert len(app.get("plotly_chart")) == 1 and not app.get("progress")
